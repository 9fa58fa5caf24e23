"""High-level encode / decode: image → ``.rdo`` bytes → image, with honest measurements.

Every number :func:`encode_image` reports about the result comes from decoding the bytes it wrote
(PSNR, MS-SSIM, file size); the rate estimated from the entropy model's likelihoods is reported
beside it and labelled as estimated.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..codecs.image.hyperprior import HyperpriorAdapter
from ..codecs.image.parallel import ParallelContextAdapter
from ..codecs.image.tiled import (PaddedPixels, analysis_halo, analyze_tiled, check_decode_memory,
                                  fits_one_tile, synthesize_uint8)
from ..codecs.image.loading import ModelUnavailable, load_model, model_name_of
from ..coding.container import (DEFAULT_MAX_PIXELS, BitstreamError, Frame, Header, RdoFile, Stream, check_pixels,
                                 check_streams_plausible, pack, unpack)
from ..core.rd import MSE, Distortion, Lambda, rd_cost, weighted_distortion_term
from ..core.types import CodedLatents, LatentCodec, Latents, frames_of
from ..data.images import LoadedImage, output_pixels, to_batch
from ..infer.codec_graph import Target, codec_graph
from ..infer.image import savi
from ..infer.options import SolverOptions
from ..metrics.quality import bpp, ms_ssim, ms_ssim_banded, psnr, rate_sanity, squared_error_sum


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
    # the rate guard: lossless PNG size of the input (Pillow, zlib level 1) and the warnings
    # raised when the file or the amortized estimate exceeds it (rdopt.metrics.quality.rate_sanity)
    png_bytes: int | None = None
    warnings: tuple[str, ...] = ()
    # the distortion SAVI minimised (mse, ms-ssim, mix:A), whether a per-pixel weight map (ROI)
    # entered it, and the rate-control search that chose the quality and λ (rdopt.ratecontrol.image), if any
    distortion: str = "mse"
    weighted: bool = False
    rate_control: dict | None = None
    # Ctrl-C / SIGTERM stopped the optimization: the file holds the best point found before it
    interrupted: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["messages"] = list(self.messages)
        d["warnings"] = list(self.warnings)
        return d


def header_for(model: LatentCodec, img: LoadedImage, options: SolverOptions, steps: int) -> Header:
    return Header(
        model_id=model.model_id, weight_hash=model.weight_hash()[:8], height=img.height, width=img.width,
        grayscale=img.grayscale, alpha_dropped=img.alpha_dropped, method=options.method, steps=steps,
        solver=options.solver,
    )


@dataclass(frozen=True)
class TracePoint:
    """One point of a learning curve: the true (hard-rounded) and relaxed objectives at the same point
    (the parameters a step starts from), the discretization gap ``true − relaxed`` (paper 003, Fig. 3),
    and the temperature of annealed methods."""

    step: int
    true: float
    relaxed: float
    gap: float
    tau: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.tau is None:
            del d["tau"]
        return d


class Encoded(NamedTuple):
    data: bytes  # the .rdo file
    stats: EncodeStats
    pixels: np.ndarray  # what decoding the file gives (as ``rdopt decode`` writes it)
    trace: list[TracePoint]  # learning curve of this image (``options.trace_every`` > 0), else empty


class Decoded(NamedTuple):
    rgb: np.ndarray  # reconstructed RGB uint8
    pixels: np.ndarray  # output pixels as written (grayscale sources: one channel)
    header: Header


def frame_types(codec: LatentCodec) -> tuple[str, ...]:
    """Frame types of a codec's frames: the first intra (``I``), the others predicted (``P``)."""
    return tuple("I" if f == 0 else "P" for f in range(len(frames_of(codec.latents))))


def rdo_file(codec: LatentCodec, coded: CodedLatents, index: int, header: Header,
             side_info_bits: tuple[int, ...] | None = None) -> RdoFile:
    """The container of item ``index`` of ``coded``: one chunk per frame of the codec, one named stream
    per latent (in the codec's order, with its latent kind)."""
    groups = frames_of(codec.latents)
    kinds = {s.name: s.kind for s in codec.latents}
    side = side_info_bits or (0,) * len(groups)
    frames = tuple(
        Frame(t, tuple(Stream(n, kinds[n], coded.streams[n][index]) for n in names), bits)
        for t, names, bits in zip(frame_types(codec), groups, side)
    )
    return RdoFile(header, frames)


def coded_latents(f: RdoFile, codec: LatentCodec) -> CodedLatents:
    """The named streams of a container for ``codec`` (one item), with the latent shapes the image size
    implies. A v1 file's streams are the codec's latents in order."""
    h = f.header
    specs = codec.latents
    if f.version == 1:
        if len(f.strings) != len(specs):
            raise BitstreamError(f"corrupt bitstream: a {codec.family} file has {len(specs)} strings, "
                                 f"found {len(f.strings)}")
        streams = {s.name: [data] for s, data in zip(specs, f.strings)}
    else:
        groups = frames_of(specs)
        if len(f.frames) != len(groups):
            raise BitstreamError(f"corrupt bitstream: {codec.model_id} codes {len(groups)} frame(s), the file has "
                                 f"{len(f.frames)}")
        streams = {}
        for fr, names in zip(f.frames, groups):
            if len(fr.streams) != len(names):
                raise BitstreamError(f"corrupt bitstream: a frame of {codec.model_id} has streams "
                                     f"{', '.join(names)}, found {len(fr.streams)}")
            for n in names:
                streams[n] = [fr.stream(n).data]
    m = codec.pad_multiple
    ph, pw = -(-h.height // m) * m, -(-h.width // m) * m
    return CodedLatents(streams=streams, shapes=codec.latent_shapes(ph, pw))


def check_distortion(distortion: Distortion, height: int, width: int) -> list[str]:
    """Refuse a distortion the image size cannot measure; notes for one measured with fewer MS-SSIM scales.
    Without explicit ``scales`` MS-SSIM needs at least two (a single scale is plain SSIM)."""
    from ..metrics.msssim import WIN_SIZE, max_scales, min_side

    if distortion.ms_ssim == 0.0:
        return []
    fit = max_scales(height, width)
    if fit == 0:
        raise ValueError(f"the {distortion.name} distortion needs an image of at least 11 pixels per side "
                         f"(MS-SSIM's window), got {width}×{height}: use the mse distortion")
    if fit == 1 and distortion.scales is None:
        raise ValueError(f"the {distortion.name} distortion needs an image of at least {min_side(2)} pixels per side "
                         f"(two scales of MS-SSIM's {WIN_SIZE}×{WIN_SIZE} window; one is plain SSIM, all five need "
                         f"{min_side()}), got {width}×{height}: use the mse distortion")
    if distortion.scales is not None and distortion.scales > fit:
        raise ValueError(f"MS-SSIM with {distortion.scales} scales does not fit a {width}×{height} image "
                         f"(at most {fit})")
    scales = distortion.scales or fit
    if scales < 5:
        return [f"{distortion.name}: MS-SSIM objective with {scales} scale(s) (5 need at least 161 pixels per side; "
                f"the image is {width}×{height})"]
    return []


def check_weight(weight: Tensor | None, batch: int, height: int, width: int) -> Tensor | None:
    """A per-pixel distortion weight map as ``B×1×H×W`` (or ``1×1×H×W``) over the visible image."""
    if weight is None:
        return None
    w = torch.as_tensor(weight)
    if w.dim() == 2:
        w = w[None, None]
    elif w.dim() == 3:
        w = w[:, None]
    if w.dim() != 4 or w.shape[1] != 1 or w.shape[-2:] != (height, width) or w.shape[0] not in (1, batch):
        raise ValueError(f"a distortion weight map must be {height}×{width} (the image), one per image or one for all, "
                         f"got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("a distortion weight map must be finite and non-negative")
    return w


def encode_images(model: HyperpriorAdapter, images: list[LoadedImage], options: SolverOptions,
                  lmbda: Lambda | None = None, *, distortion: Distortion = MSE, weight: Tensor | None = None,
                  init: Latents | None = None) -> list[Encoded]:
    """Encode images of one size as one optimization batch. Decodes every file it writes to measure it.

    ``lmbda``: the R-D trade-off (a number, one per image, or a per-pixel map over the image); default
    the model's training λ. ``distortion``: what the optimization minimises besides the rate (MSE,
    MS-SSIM or a mix; :class:`rdopt.core.rd.Distortion`); ``weight``: a per-pixel distortion weight map over
    the image (``H×W``, ``B×1×H×W``; a region of interest); the decoder and the bitstream are the same
    whatever they are. ``init``: start latents of the optimization (default the amortized ones), e.g. a
    previous result's (warm start)."""
    if not images:
        return []
    h, w = images[0].height, images[0].width
    if any((im.height, im.width) != (h, w) for im in images):
        raise ValueError("images of one batch must have the same size")
    notes = check_distortion(distortion, h, w) if options.method != "amortized" and options.steps else []
    weight = check_weight(weight, len(images), h, w)
    device = model.device
    lmbda = model.lmbda if lmbda is None else lmbda
    if encodes_in_tiles(model, options, h, w, lmbda, distortion=distortion, weight=weight, init=init):
        return [encode_tiled(model, im, options, _item_lambda(lmbda, b)) for b, im in enumerate(images)]
    t0 = time.perf_counter()
    x = to_batch([im.rgb for im in images], model.pad_multiple, device)
    if weight is not None:
        weight = weight.to(device=device, dtype=x.dtype)
    target = Target(x, lmbda, h, w, distortion=distortion, weight=weight)
    result = savi(codec_graph(model), target, options, init=init)
    result.messages[:0] = notes
    return package(model, images, target, result, options, t0)


def package(model: HyperpriorAdapter, images: list[LoadedImage], target: Target, result, options: SolverOptions,
            t0: float | None = None, steps: int | None = None) -> list[Encoded]:
    """The files of an optimization result (:func:`rdopt.infer.image.savi` on ``target``), each decoded to
    measure it: what :func:`encode_images` returns. ``steps``: the step count the header and the report
    give (default: the steps the result's solver ran)."""
    t0 = time.perf_counter() if t0 is None else t0
    x, lmbda, (h, w) = target.x, target.lmbda, target.visible
    distortion, weight = target.distortion, target.weight
    t_opt = result.dag.seconds if result.dag is not None else 0.0
    with torch.no_grad():
        hard_lat = model.quantize(result.latents)
        est = rd_cost(model.hard_evaluate(hard_lat), x, lmbda, visible=(h, w), distortion=distortion, weight=weight)
        amortized_bpp = None  # the amortized start's rate, for the guard (the file itself is checked below)
        amortized_loss = result.initial_loss
        if result.dag is not None:  # an optimizing method ran (maybe from a warm start: measure the amortized one)
            start = model.quantize(model.amortize(x))
            at_start = rd_cost(model.hard_evaluate(start), x, lmbda, visible=(h, w), distortion=distortion, weight=weight)
            amortized_bpp, amortized_loss = at_start.bpp, at_start.loss
    out = []
    if steps is None:
        steps = sum(st.steps for st in result.dag.stages) if result.dag is not None else 0
    for b, im in enumerate(images):
        coded = model.compress(hard_lat.select(b))
        data = pack(rdo_file(model, coded, 0, header_for(model, im, options, steps)))
        t_enc = (time.perf_counter() - t0) / len(images)
        t1 = time.perf_counter()
        rgb, pixels, _ = decode_bytes(data, model, max_pixels=None)  # the file just written: any size it has
        t_dec = time.perf_counter() - t1
        ref = output_pixels(im.rgb, im.grayscale)
        mse = float(np.mean((pixels.astype(np.float64) - ref.astype(np.float64)) ** 2)) / 255.0**2
        file_bpp = bpp(len(data), h, w)
        lmbda_b = _item_lambda(lmbda, b)
        if distortion.is_mse and weight is None:
            real_cost = file_bpp + lmbda_b * 255.0**2 * mse
        else:
            wb = None if weight is None else weight[b if weight.shape[0] > 1 else 0][None].double().cpu()
            dec = torch.from_numpy(np.array(rgb, dtype=np.float64)).permute(2, 0, 1)[None] / 255.0
            src = torch.from_numpy(np.array(im.rgb, dtype=np.float64)).permute(2, 0, 1)[None] / 255.0
            real_cost = file_bpp + float(weighted_distortion_term(dec, src, lmbda_b, distortion, wb)[1][0])
        amortized_bits = None if amortized_bpp is None else float(amortized_bpp[b]) * h * w
        png_bytes, warnings = rate_sanity(ref, len(data), amortized_bits)
        stats = EncodeStats(
            model=model.model_id, quality=model.quality, lmbda=lmbda_b, method=options.method, steps=steps,
            width=w, height=h, file_bytes=len(data), bpp=file_bpp,
            bpp_payload=bpp(coded.num_bytes(0), h, w),
            bpp_estimated=float(est.bpp[b]), psnr=psnr(pixels, ref),
            ms_ssim=ms_ssim(rgb, im.rgb) if not im.grayscale else ms_ssim(np.repeat(pixels[..., None], 3, 2), im.rgb),
            rd_cost=real_cost,
            rd_cost_estimated=float(est.loss[b]), rd_cost_amortized_estimated=float(amortized_loss[b]),
            encode_seconds=t_enc, optimize_seconds=t_opt / len(images), decode_seconds=t_dec,
            messages=tuple(result.messages), png_bytes=png_bytes, warnings=tuple(warnings),
            distortion=distortion.name, weighted=weight is not None,
            interrupted=bool(result.dag is not None and result.dag.interrupted),
        )
        trace = []
        if result.loop is not None:
            trace = [TracePoint(t["step"], t["true"][b], t["relaxed"][b], t["true"][b] - t["relaxed"][b], t.get("tau"))
                     for t in result.loop.trace]
        out.append(Encoded(data, stats, pixels, trace))
    return out


# Memory per pixel of the padded image: twice the peak measured with the embedded models (N=64) on a
# CPU (benchmarks/startup/README.md: ≈ 0.35 KB amortized, ≈ 0.7 KB with SGA); three times that for
# the CompressAI zoo models, whose transforms are up to three times wider (N=192). An amortized encode of an
# image larger than one tile runs tile by tile (encode_tiled) and is checked against
# rdopt.codecs.image.tiled.encode_tiled_bytes_needed instead, with the widest latents (M) and transforms (N)
# of the family: the embedded models' (192, 64), the zoo's (320, 192).
ENCODE_BYTES_PER_PIXEL = {"amortized": 700, "optimized": 1400}
ZOO_FACTOR = 3
TILED_CHANNELS = {"embedded": (192, 64), "zoo": (320, 192)}


def encode_memory_check(method: str, model: str | None, tiled: bool = False):
    """``check_size(width, height)`` for :func:`load_image`: refuses, before the pixels are decoded, an
    image whose encoding would not fit the memory budget. ``tiled``: the encode is amortized with the MSE
    distortion and no weight map (:func:`rdopt.api.image.encodes_in_tiles`), so an image larger than one
    tile is encoded tile by tile, in memory that grows with its latents and 8-bit pixels only."""
    from ..codecs.image.tiled import encode_tiled_bytes_needed, fits_one_tile
    from ..codecs.names import EMBEDDED_MODELS, TILED_ENCODE_MODELS
    from ..data.safeio import check_memory

    name = model_name_of(model)
    embedded = name in EMBEDDED_MODELS
    tiled = tiled and name in TILED_ENCODE_MODELS  # the models encodes_in_tiles tiles
    per_pixel = ENCODE_BYTES_PER_PIXEL["amortized" if method == "amortized" else "optimized"]
    per_pixel *= 1 if embedded else ZOO_FACTOR

    def check(width: int, height: int) -> None:
        if tiled and not fits_one_tile(height, width):
            m, n = TILED_CHANNELS["embedded" if embedded else "zoo"]
            needed = encode_tiled_bytes_needed(height, width, m, n)
        else:
            ph, pw = -(-height // 64) * 64, -(-width // 64) * 64
            needed = per_pixel * ph * pw
        check_memory(needed, f"encoding a {width}×{height} image ({method})")

    return check


def encodes_in_tiles(model, options: SolverOptions, height: int, width: int, lmbda: Lambda | None = None, *,
                     distortion: Distortion = MSE, weight: Tensor | None = None, init: Latents | None = None) -> bool:
    """Whether :func:`encode_images` encodes an image of this size by :func:`encode_tiled`: an amortized encode
    (no optimization steps) of an image larger than one synthesis tile, with the MSE distortion, no weight
    map, no per-pixel λ and no start latents, by a model whose ``g_a`` tiles exactly and whose entropy models
    run on the latents in parallel (a hyperprior, a checkerboard / channel-group context model; not a raster-scan
    context model, whose serial pass over the latents is the cost of such an image anyway). Everything else
    takes the whole-image path (its results are unchanged)."""
    amortized = options.method == "amortized" or options.steps == 0
    lambda_map = isinstance(lmbda, torch.Tensor) and lmbda.dim() > 1
    return (amortized and init is None and weight is None and distortion.is_mse and not lambda_map
            and isinstance(model, (HyperpriorAdapter, ParallelContextAdapter)) and not fits_one_tile(height, width)
            and analysis_halo(model.net.g_a) is not None)


def encode_tiled(model: HyperpriorAdapter | ParallelContextAdapter, image: LoadedImage, options: SolverOptions,
                 lmbda: float) -> Encoded:
    """The amortized encode of a large image in bounded memory, with what :func:`encode_images` reports.

    ``y = g_a(x)`` runs tile by tile from the 8-bit pixels (:func:`rdopt.codecs.image.tiled.analyze_tiled`; no
    float copy of the image), ``z = h_a(y)``, the quantization (in a context model's decoding order) and the
    entropy coding run on the latents (1/256 of the pixels per channel of ``y``). The estimated rate comes from
    the entropy models' likelihoods alone (``model.hard_bits``); every distortion is measured on the tiled decode
    of the file just written: PSNR and the real R-D cost on its 8-bit pixels, the estimated R-D cost's MSE on ``g_s``'s float output before rounding,
    tile by tile (the estimate of the whole-image path, up to summation order); MS-SSIM by
    :func:`rdopt.metrics.quality.ms_ssim_banded`. ``options.progress``: bars over the tiles on standard error."""
    progress = bool(getattr(options, "progress", False))
    h, w = image.height, image.width
    t0 = time.perf_counter()
    with torch.no_grad():
        y = analyze_tiled(model, PaddedPixels(image.rgb, model.pad_multiple, model.device), progress=progress)
        hard_lat = model.quantize(Latents({"y": y, "z": model.hyper_analysis(y)}))
        del y
        est_bpp = model.hard_bits(hard_lat) / (h * w)
        coded = model.compress(hard_lat)
        del hard_lat
    data = pack(rdo_file(model, coded, 0, header_for(model, image, options, 0)))
    t_enc = time.perf_counter() - t0

    source = PaddedPixels(image.rgb, 1, model.device)
    float_sse = [0.0]

    def measure(top: int, left: int, part: Tensor) -> None:  # g_s's output before rounding against the input
        ref = source.crop(top, top + part.shape[-2], left, left + part.shape[-1]).to(part.dtype)
        float_sse[0] += float((part - ref).pow(2).sum(dtype=torch.float64))

    t1 = time.perf_counter()
    rgb, pixels, _ = decode_bytes(data, model, max_pixels=None, progress=progress, on_tile=measure)
    t_dec = time.perf_counter() - t1
    ref = output_pixels(image.rgb, image.grayscale)
    # the mean of the squared 8-bit differences: an exact integer sum, so the same number as a float64 mean
    mean_sq = squared_error_sum(pixels, ref) / pixels.size
    mse = mean_sq / 255.0**2
    file_bpp = bpp(len(data), h, w)
    est_loss = float(est_bpp[0]) + lmbda * 255.0**2 * float_sse[0] / (3 * h * w)
    png_bytes, warnings = rate_sanity(ref, len(data), None)
    decoded_rgb = rgb if not image.grayscale else np.repeat(pixels[..., None], 3, 2)
    stats = EncodeStats(
        model=model.model_id, quality=model.quality, lmbda=lmbda, method=options.method, steps=0,
        width=w, height=h, file_bytes=len(data), bpp=file_bpp, bpp_payload=bpp(coded.num_bytes(0), h, w),
        bpp_estimated=float(est_bpp[0]), psnr=math.inf if mean_sq == 0 else 10.0 * math.log10(255.0**2 / mean_sq),
        ms_ssim=ms_ssim_banded(decoded_rgb, image.rgb), rd_cost=file_bpp + lmbda * 255.0**2 * mse,
        rd_cost_estimated=est_loss, rd_cost_amortized_estimated=est_loss,
        encode_seconds=t_enc, optimize_seconds=0.0, decode_seconds=t_dec, png_bytes=png_bytes,
        warnings=tuple(warnings),
    )
    return Encoded(data, stats, pixels, [])


def _item_lambda(lmbda: Lambda, b: int) -> float:
    """λ of item ``b`` as one number (a per-pixel map: its mean) for the report."""
    if not isinstance(lmbda, torch.Tensor):
        return float(lmbda)
    if lmbda.dim() == 0:
        return float(lmbda)
    if lmbda.dim() == 1:
        return float(lmbda[b])
    m = lmbda[b] if lmbda.dim() == 4 and lmbda.shape[0] > 1 else lmbda
    return float(m.double().mean())


def encode_image(model: HyperpriorAdapter, image: LoadedImage, options: SolverOptions | None = None,
                 lmbda: Lambda | None = None, *, distortion: Distortion = MSE, weight: Tensor | None = None,
                 init: Latents | None = None) -> Encoded:
    """Encode one image; see :func:`encode_images`."""
    return encode_images(model, [image], options or SolverOptions(method="amortized", steps=0), lmbda,
                         distortion=distortion, weight=weight, init=init)[0]


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


def check_model(header: Header, model: LatentCodec) -> None:
    if header.weight_hash != model.weight_hash()[:8]:
        raise BitstreamError(
            f"bitstream was written by {header.model_id} with other weights than the loaded {model.model_id}"
        )


def decode_latents(data: bytes | RdoFile, codec: LatentCodec, *,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Latents, Header]:
    """The hard latents a ``.rdo`` file holds for ``codec`` (any codec of the protocol; v1 and v2 files).
    The codec's weights must match the header's hash. ``max_pixels``: the largest image size decoded
    (:func:`rdopt.coding.container.check_pixels`; ``None``: no limit)."""
    f = data if isinstance(data, RdoFile) else unpack(data)
    check_pixels(f.header.width, f.header.height, max_pixels)
    check_model(f.header, codec)
    coded = coded_latents(f, codec)
    check_payload(f.header, coded, codec)
    return _decompress(codec, coded), f.header


def check_payload(header: Header, coded: CodedLatents, codec: LatentCodec) -> None:
    """Refuse streams too short for the latent shapes the header's image size implies, before the codec
    allocates anything (v1 and v2 files alike: ``coded`` holds their streams by name). Needs the codec's
    ``min_bits_per_symbol()`` (one number per latent, in the codec's order); skipped for codecs without it."""
    fewest = getattr(codec, "min_bits_per_symbol", None)
    if fewest is None:
        return
    names = [s.name for s in codec.latents]
    symbols = [int(np.prod(coded.shapes[n])) for n in names]
    check_streams_plausible(header, [coded.streams[n][0] for n in names], symbols, list(fewest()), names)


def _decompress(codec: LatentCodec, coded: CodedLatents) -> Latents:
    try:
        return codec.decompress(coded)
    except (RuntimeError, ValueError) as e:
        raise BitstreamError(f"corrupt bitstream: entropy decoding failed ({str(e).splitlines()[0]})") from None


@torch.no_grad()
def decode_bytes(data: bytes, model: HyperpriorAdapter | None = None, checkpoint: str | None = None,
                 device=None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, progress: bool = False,
                 on_tile=None) -> Decoded:
    """Decode ``.rdo`` bytes of an image: (reconstructed RGB uint8, output pixels as written, header).

    The model is the one the header names unless given; its weights must match the header's hash.
    ``max_pixels``: the largest image size decoded, checked from the header before anything is loaded or
    allocated (:func:`rdopt.coding.container.check_pixels`; ``None``: no limit). ``progress``: a bar over
    the synthesis tiles on standard error; ``on_tile``: see :func:`rdopt.codecs.image.tiled.synthesize_uint8`
    (hyperprior files)."""
    f = unpack(data)
    h = f.header
    check_pixels(h.width, h.height, max_pixels)
    if h.method == "sga-bb":  # lossy bits-back: its own model family and streams (rdopt.api.bitsback)
        from .bitsback import decode_bytes_bb

        bb = decode_bytes_bb(f, model if model is not None and getattr(model, "family", "") == "rdopt-msh-bb" else None,
                             checkpoint, device)
        return Decoded(bb.rgb, bb.pixels, bb.header)
    if model is None:
        model = model_for_header(h, checkpoint, device)
    check_model(h, model)
    coded = coded_latents(f, model)
    check_payload(h, coded, model)
    check_decode_memory(h, coded, model)  # sizes against the payload and the memory budget, before allocating
    latents = _decompress(model, coded)
    rgb = synthesize_uint8(model, latents["y"], h.height, h.width, progress=progress,
                           on_tile=on_tile)  # tile by tile for large images
    return Decoded(rgb, output_pixels(rgb, h.grayscale), h)


def default_model(name: str | None = None, quality: int = 3, checkpoint: str | None = None, device=None) -> HyperpriorAdapter:
    return load_model(name, quality, checkpoint=checkpoint, device=device)
