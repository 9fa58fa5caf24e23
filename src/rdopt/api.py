"""High-level encode / decode: image → ``.rdo`` bytes → image, with honest measurements.

Every number :func:`encode_image` reports about the result comes from decoding the bytes it wrote
(PSNR, MS-SSIM, file size); the rate estimated from the entropy model's likelihoods is reported
beside it and labelled as estimated.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch

from .coding.container import BitstreamError, Header, RdoFile, pack, unpack
from .coding.tiled import check_decodable, synthesize_uint8
from .data.images import LoadedImage, output_pixels, to_batch
from .infer.image import SaviOptions, rd_objective, savi
from .metrics.quality import bpp, ms_ssim, psnr, rate_sanity
from .models.adapter import HyperpriorAdapter
from .models.registry import EMBEDDED, ModelUnavailable, load_model
from .relax.rounding import hard
from .types import CodedLatents


@dataclass(frozen=True)
class EncodeStats:
    """What ``rdopt encode`` reports (``--json`` prints these fields)."""

    model: str
    quality: int
    lmbda: float
    method: str
    steps: int
    width: int
    height: int
    file_bytes: int
    bpp: float  # real: 8·file size / pixels
    bpp_payload: float  # real: entropy-coded strings only (no container header)
    bpp_estimated: float  # estimated from the entropy model's likelihoods
    psnr: float  # on the decoded 8-bit output
    ms_ssim: float | None
    rd_cost: float  # bpp (real, file) + λ·255²·MSE (decoded 8-bit output, [0,1] scale)
    rd_cost_estimated: float  # estimated bpp + λ·255²·MSE before 8-bit rounding (the optimized objective)
    rd_cost_amortized_estimated: float  # the same for the amortized start
    encode_seconds: float
    optimize_seconds: float
    decode_seconds: float
    messages: tuple[str, ...] = ()
    # the rate guard (issue #5): lossless PNG size of the input (Pillow, zlib level 1) and the warnings
    # raised when the file or the amortized estimate exceeds it (rdopt.metrics.quality.rate_sanity)
    png_bytes: int | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["messages"] = list(self.messages)
        d["warnings"] = list(self.warnings)
        return d


def _header_for(model: HyperpriorAdapter, img: LoadedImage, method: str, steps: int) -> Header:
    return Header(
        model_id=model.model_id, weight_hash=model.weight_hash()[:8], height=img.height, width=img.width,
        grayscale=img.grayscale, alpha_dropped=img.alpha_dropped, method=method, steps=steps,
    )


class Encoded(NamedTuple):
    data: bytes  # the .rdo file
    stats: EncodeStats
    pixels: np.ndarray  # what decoding the file gives (as ``rdopt decode`` writes it)
    trace: list[dict]  # learning curve of this image (``options.trace_every`` > 0), else empty


def encode_images(model: HyperpriorAdapter, images: list[LoadedImage], options: SaviOptions) -> list[Encoded]:
    """Encode images of one size as one optimization batch. Decodes every file it writes to measure it."""
    if not images:
        return []
    h, w = images[0].height, images[0].width
    if any((im.height, im.width) != (h, w) for im in images):
        raise ValueError("images of one batch must have the same size")
    device = model.device
    t0 = time.perf_counter()
    x = to_batch([im.rgb for im in images], model.pad_multiple, device)
    result = savi(model, x, options, height=h, width=w)
    t_opt = result.loop.seconds if result.loop is not None else 0.0
    with torch.no_grad():
        hard_lat = model.quantize(result.latents)
        est_loss, est_bpp, _ = rd_objective(model, hard_lat, x, hard(), h, w)
        amortized_bpp = None  # the amortized start's rate, for the guard (the file itself is checked below)
        if result.loop is not None:
            amortized_bpp = rd_objective(model, model.quantize(model.amortize(x)), x, hard(), h, w)[1]
    out = []
    steps = result.loop.steps_run if result.loop is not None else 0
    for b, im in enumerate(images):
        coded = model.compress(hard_lat.select(b))
        data = pack(RdoFile(_header_for(model, im, options.method, steps), [s[0] for s in coded.strings]))
        t_enc = (time.perf_counter() - t0) / len(images)
        t1 = time.perf_counter()
        rgb, pixels, _ = decode_bytes(data, model)
        t_dec = time.perf_counter() - t1
        ref = output_pixels(im.rgb, im.grayscale)
        mse = float(np.mean((pixels.astype(np.float64) - ref.astype(np.float64)) ** 2)) / 255.0**2
        file_bpp = bpp(len(data), h, w)
        amortized_bits = None if amortized_bpp is None else float(amortized_bpp[b]) * h * w
        png_bytes, warnings = rate_sanity(ref, len(data), amortized_bits)
        stats = EncodeStats(
            model=model.model_id, quality=model.quality, lmbda=model.lmbda, method=options.method, steps=steps,
            width=w, height=h, file_bytes=len(data), bpp=file_bpp,
            bpp_payload=bpp(sum(len(s[0]) for s in coded.strings), h, w),
            bpp_estimated=float(est_bpp[b]), psnr=psnr(pixels, ref),
            ms_ssim=ms_ssim(rgb, im.rgb) if not im.grayscale else ms_ssim(np.repeat(pixels[..., None], 3, 2), im.rgb),
            rd_cost=file_bpp + model.lmbda * 255.0**2 * mse,
            rd_cost_estimated=float(est_loss[b]), rd_cost_amortized_estimated=float(result.initial_loss[b]),
            encode_seconds=t_enc, optimize_seconds=t_opt / len(images), decode_seconds=t_dec,
            messages=tuple(result.messages), png_bytes=png_bytes, warnings=tuple(warnings),
        )
        trace = []
        if result.loop is not None:
            trace = [{"step": t["step"], "true": t["true"][b], "relaxed": t["relaxed"][b],
                      **({"tau": t["tau"]} if "tau" in t else {})} for t in result.loop.trace]
        out.append(Encoded(data, stats, pixels, trace))
    return out


def encode_image(model: HyperpriorAdapter, image: LoadedImage, options: SaviOptions | None = None):
    """Encode one image; see :func:`encode_images`."""
    return encode_images(model, [image], options or SaviOptions(method="amortized", steps=0))[0]


_ID = re.compile(r"^(?P<name>[a-z0-9-]+?)-q(?P<q>[1-8])$")


def model_for_header(header: Header, checkpoint: str | None = None, device=None) -> HyperpriorAdapter:
    """Load the model a bitstream names (a checkpoint file must be given for custom models)."""
    m = _ID.match(header.model_id)
    if checkpoint is not None:
        name = header.model_id
        if m:
            name = m.group("name")
        if name.endswith("-custom"):
            name = name[: -len("-custom")]
        model = load_model(name, int(m.group("q")) if m else 0, checkpoint=checkpoint, device=device)
    elif m:
        model = load_model(m.group("name"), int(m.group("q")), device=device)
    else:
        raise ModelUnavailable(f"bitstream was written with model {header.model_id!r}: pass its --checkpoint")
    return model


def check_model(header: Header, model: HyperpriorAdapter) -> None:
    if header.weight_hash != model.weight_hash()[:8]:
        raise BitstreamError(
            f"bitstream was written by {header.model_id} with other weights than the loaded {model.model_id}"
        )


@torch.no_grad()
def decode_bytes(data: bytes, model: HyperpriorAdapter | None = None, checkpoint: str | None = None, device=None):
    """Decode ``.rdo`` bytes. Returns (reconstructed RGB uint8, output pixels as written, header).

    The model is the one the header names unless given; its weights must match the header's hash."""
    f = unpack(data)
    h = f.header
    if model is None:
        model = model_for_header(h, checkpoint, device)
    check_model(h, model)
    if len(f.strings) != 2:
        raise BitstreamError(f"corrupt bitstream: a hyperprior file has 2 strings, found {len(f.strings)}")
    check_decodable(f, model)  # sizes against the payload and the memory budget, before allocating
    ph, pw = -(-h.height // model.pad_multiple) * model.pad_multiple, -(-h.width // model.pad_multiple) * model.pad_multiple
    y_shape, z_shape = model.latent_shapes(ph, pw)
    coded = CodedLatents(strings=[[f.strings[0]], [f.strings[1]]], z_shape=z_shape[1:], y_shape=y_shape)
    try:
        latents = model.decompress(coded)
    except (RuntimeError, ValueError) as e:
        raise BitstreamError(f"corrupt bitstream: entropy decoding failed ({str(e).splitlines()[0]})") from None
    rgb = synthesize_uint8(model, latents.y, h.height, h.width)  # tile by tile for large images
    return rgb, output_pixels(rgb, h.grayscale), h


def default_model(name: str = EMBEDDED, quality: int = 3, checkpoint: str | None = None, device=None) -> HyperpriorAdapter:
    return load_model(name, quality, checkpoint=checkpoint, device=device)
