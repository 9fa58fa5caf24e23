"""Lossy bits-back coding of an image (Yang, Bamler & Mandt 2020, §3.3, Algorithm 1): encode an image
*and* a string of side information ξ into one ``.rdo`` file; the decoder gives back the image and ξ.

Encoder (:func:`encode_image_bb`):

1–2. (μy; μz, log σz²) from the inference networks, then SGA over y jointly with BBVI over q(z)
     (:func:`rdopt.infer.bitsback.sga_bbvi`); ŷ = round(y).
3.   (μz, σz) ← ``reproducible_bbvi(ŷ)`` (from ŷ alone, pinned float64 computation).
4.   ẑ ← *decode* ξ with Q(ẑ | μz, σz²) on the grid δ·ℤ (:mod:`rdopt.coding.bitsback`).
5.   encode ẑ with P(ẑ) (onto what is left of ξ) and ŷ with P(ŷ | ẑ); write streams ``y``, ``z``, ``bb``.

Decoder (:func:`decode_bytes_bb`): decode ẑ, ŷ; reconstruct; ``reproducible_bbvi(ŷ)``; encode ẑ with Q →
ξ, checked against the SHA-256 prefix the file carries (a mismatch is a :class:`SideInfoError`).

Accounting: the frame's side-information field holds the bits of ξ; **net bits = file bits − bits of ξ**.
Without a side-information file, ξ is drawn from a seeded source (``source_seed``) with about as many
bits as decoding ẑ takes, and only the net rate is meaningful.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..codecs.image.bitsback import DELTA, Y_RANGE, Z_GRID_EXP, Z_RANGE, BitsBackCodec, load_bitsback
from ..codecs.image.tiled import check_decode_memory, synthesize_uint8
from ..coding import bitsback as bbc
from ..coding.bbrecord import bits_back_accounting
from ..coding.container import BitstreamError, Frame, Header, RdoFile, Stream, pack, unpack
from ..core.determinism import pinned
from ..core.rd import Lambda
from ..core.types import CodedLatents
from ..data.images import LoadedImage, output_pixels, to_batch
from ..infer.bitsback import reproducible_bbvi, seed_of, sga_bbvi
from ..infer.options import SolverOptions
from ..metrics.quality import bpp as bpp_of, psnr

METHOD = "sga-bb"
PAD_SEED_SALT = 0x62697473_6261636B  # "bitsback"


@dataclass(frozen=True)
class BBStats:
    """What ``rdopt encode --method sga-bb`` reports."""

    model: str
    quality: int
    lmbda: float
    method: str
    steps: int  # SGA + BBVI steps of the encoder (line 2)
    bbvi_steps: int  # reproducible_bbvi steps (lines 3 and 7)
    width: int
    height: int
    file_bytes: int
    file_bits: int
    side_info_bits: int  # bits of ξ recovered by the decoder (the frame's side-information field)
    net_bits: int  # file_bits − side_info_bits
    bpp: float  # file bits / pixels
    net_bpp: float  # net bits / pixels
    y_bits: int  # y stream
    z_bits: int  # z stream (ẑ with P on top of what ẑ left of ξ)
    z_taken_bits: int  # bits decoding ẑ took from ξ (+ padding)
    padding_bits: int  # pseudo-random words put under ξ because it was shorter than what ẑ takes
    side_info_source: str  # "file" or "seeded"
    psnr: float
    rd_cost_net: float  # net bpp + λ·255²·MSE of the decoded 8-bit output
    objective_start: float  # estimated NELBO R-D objective (net rate) at the amortized start …
    objective_final: float  # … and after the joint optimization
    optimize_seconds: float
    bbvi_seconds: float  # encoder's reproducible_bbvi
    encode_seconds: float
    decode_seconds: float  # decoding the written file, reproducible_bbvi and recovery included
    messages: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["messages"] = list(self.messages)
        return d


class EncodedBB(NamedTuple):
    data: bytes
    stats: BBStats
    pixels: np.ndarray
    side_info: bytes


class DecodedBB(NamedTuple):
    rgb: np.ndarray
    pixels: np.ndarray
    header: Header
    side_info: bytes
    file_bits: int
    side_info_bits: int
    bbvi_seconds: float

    @property
    def net_bits(self) -> int:
        return self.file_bits - self.side_info_bits


def _pad_seed(y_hat: torch.Tensor) -> int:
    return seed_of(y_hat) ^ PAD_SEED_SALT


def seeded_side_info(num_bytes: int, seed: int) -> bytes:
    """The seeded source of side information: ``num_bytes`` bytes of numpy's PCG64 with ``seed``."""
    return np.random.default_rng(seed).bytes(int(num_bytes))


def encode_image_bb(model: BitsBackCodec, image: LoadedImage, options: SolverOptions | None = None,
                    lmbda: Lambda | None = None, side_info: bytes | None = None,
                    source_seed: int = 0) -> EncodedBB:
    """Algorithm 1, ``encode``. ``options``: the joint SGA + BBVI of line 2 (``steps``, ``method``;
    ``method="amortized"`` or ``steps=0`` skips it: ablations A5/A6) and ``reproducible_bbvi`` of lines 9–10
    (``bbvi_steps``, ``bbvi_lr``; ``bbvi_steps=0``: q(z) = h_a(ŷ), A6); default 500 SGA steps.
    ``side_info``: ξ (``None``: a seeded source sized to what ẑ takes)."""
    options = options or SolverOptions(steps=500)
    lmbda = model.lmbda if lmbda is None else float(lmbda)
    h, w = image.height, image.width
    t0 = time.perf_counter()
    x = to_batch([image.rgb], model.pad_multiple, model.device)
    joint = sga_bbvi(model, x, lmbda, (h, w), options)
    y_hat = torch.round(joint.y.detach())
    if float(y_hat.abs().max()) > Y_RANGE:
        raise ValueError(f"latents outside ±{Y_RANGE}: this image cannot be coded by {model.model_id}")
    t1 = time.perf_counter()
    mu, sigma = reproducible_bbvi(model, y_hat, options)
    t_bbvi = time.perf_counter() - t1
    q_mean, q_std = bbc.q_params(mu.numpy(), sigma.numpy(), Z_GRID_EXP)
    source = "file"
    if side_info is None:
        # as many bytes as ẑ can take, plus the words the stack keeps (no padding needed)
        side_info = seeded_side_info(int(np.ceil(bbc.q_capacity_bits(q_std) / 8)) + 4 * (bbc.MIN_WORDS_LEFT + 2),
                                     source_seed)
        source = "seeded"
    z_shape = tuple(mu.shape)
    enc = bbc.take_z_from_side_info(bytes(side_info), q_mean, q_std, z_shape, Z_RANGE, _pad_seed(y_hat))
    z_hat = torch.from_numpy(enc.z_sym).to(torch.float64) * DELTA
    with pinned():
        means, scales = model.y_coding_params(z_hat)
    y_stream = bbc.encode_y(y_hat.to(torch.int64).cpu().numpy(), means, scales, Y_RANGE)
    z_stream = bbc.finish_z_stream(enc, model.z_prior_table())
    record = bbc.BBRecord(Z_GRID_EXP, Z_RANGE, options.bbvi_steps, options.bbvi_lr, enc.pad_words,
                          bbc.checksum(side_info))
    header = Header(model_id=model.model_id, weight_hash=model.weight_hash()[:8], height=h, width=w,
                    grayscale=image.grayscale, alpha_dropped=image.alpha_dropped, method=METHOD,
                    steps=joint.steps, solver="joint")
    frame = Frame("I", (Stream("y", "latent", y_stream), Stream("z", "hyper", z_stream),
                        Stream("bb", "bits-back", record.pack())), 8 * len(side_info))
    data = pack(RdoFile(header, (frame,)))
    t_enc = time.perf_counter() - t0
    t2 = time.perf_counter()
    dec = decode_bytes_bb(data, model)
    t_dec = time.perf_counter() - t2
    if dec.side_info != bytes(side_info):  # recover_side_info checks the checksum; this cannot differ
        raise RuntimeError("internal error: decoding the written file gave other side information")
    ref = output_pixels(image.rgb, image.grayscale)
    mse = float(np.mean((dec.pixels.astype(np.float64) - ref.astype(np.float64)) ** 2)) / 255.0**2
    file_bits = 8 * len(data)
    net = file_bits - 8 * len(side_info)
    stats = BBStats(
        model=model.model_id, quality=model.quality, lmbda=lmbda, method=METHOD, steps=joint.steps,
        bbvi_steps=options.bbvi_steps, width=w, height=h, file_bytes=len(data), file_bits=file_bits,
        side_info_bits=8 * len(side_info), net_bits=net, bpp=bpp_of(len(data), h, w), net_bpp=net / (h * w),
        y_bits=8 * len(y_stream), z_bits=8 * len(z_stream), z_taken_bits=enc.consumed_bits,
        padding_bits=32 * enc.pad_words, side_info_source=source, psnr=psnr(dec.pixels, ref),
        rd_cost_net=net / (h * w) + lmbda * 255.0**2 * mse,
        objective_start=float(joint.initial_loss[0]), objective_final=float(joint.final_loss[0]),
        optimize_seconds=joint.seconds, bbvi_seconds=t_bbvi, encode_seconds=t_enc, decode_seconds=t_dec,
        messages=tuple(joint.messages),
    )
    return EncodedBB(data, stats, dec.pixels, bytes(side_info))


def model_for_bb_header(header: Header, checkpoint: str | None = None, device=None) -> BitsBackCodec:
    from ..codecs.image.loading import ModelUnavailable

    mid = header.model_id
    if checkpoint is not None:
        return load_bitsback(checkpoint=checkpoint, device=device)
    if mid.startswith("rdopt-msh-bb-q") and mid[len("rdopt-msh-bb-q"):].isdigit():
        return load_bitsback(int(mid[len("rdopt-msh-bb-q"):]), device=device)
    raise ModelUnavailable(f"bitstream was written with model {mid!r}: pass its --checkpoint")


def _streams(f: RdoFile) -> tuple[Frame, bytes, bytes, bbc.BBRecord]:
    if f.header.method != METHOD:
        raise BitstreamError(f"not a bits-back bitstream (method {f.header.method})")
    if len(f.frames) != 1:
        raise BitstreamError(f"corrupt bitstream: a bits-back image has one frame, found {len(f.frames)}")
    fr = f.frames[0]
    if sorted(s.name for s in fr.streams) != ["bb", "y", "z"]:
        raise BitstreamError("corrupt bitstream: a bits-back frame has the streams y, z and bb")
    return fr, fr.stream("y").data, fr.stream("z").data, bbc.BBRecord.unpack(fr.stream("bb").data)


@torch.no_grad()
def decode_bytes_bb(data: bytes | RdoFile, model: BitsBackCodec | None = None, checkpoint: str | None = None,
                    device=None) -> DecodedBB:
    """Algorithm 1, ``decode``: the image and the side information ξ of a bits-back ``.rdo`` file."""
    f = data if isinstance(data, RdoFile) else unpack(data)
    file_bits = 8 * len(pack(f)) if isinstance(data, RdoFile) else 8 * len(data)
    h = f.header
    fr, y_data, z_data, record = _streams(f)
    if model is None:
        model = model_for_bb_header(h, checkpoint, device)
    if h.weight_hash != model.weight_hash()[:8]:
        raise BitstreamError(f"bitstream was written by {h.model_id} with other weights than the loaded {model.model_id}")
    if (record.grid_exp, record.z_range) != (Z_GRID_EXP, Z_RANGE):
        raise BitstreamError(f"bitstream codes ẑ on the grid 2^-{record.grid_exp}, ±{record.z_range}; this rdopt "
                             f"uses 2^-{Z_GRID_EXP}, ±{Z_RANGE}")
    m = model.pad_multiple
    shapes = model.latent_shapes(-(-h.height // m) * m, -(-h.width // m) * m)
    check_decode_memory(h, CodedLatents({"y": [y_data], "z": [z_data]}, shapes), model)
    try:
        z_sym, coder = bbc.decode_z_for_bits_back(z_data, (1, *shapes["z"]), model.z_prior_table())
        z_hat = torch.from_numpy(z_sym).to(torch.float64) * DELTA
        with pinned():
            means, scales = model.y_coding_params(z_hat)
        y_sym = bbc.decode_y(y_data, means, scales, Y_RANGE)
    except BitstreamError:
        raise
    except (ValueError, RuntimeError, AssertionError) as e:
        raise BitstreamError(f"corrupt bitstream: entropy decoding failed ({str(e).splitlines()[0]})") from None
    y_hat = torch.from_numpy(y_sym).to(torch.float32)
    rgb = synthesize_uint8(model, y_hat.to(model.device), h.height, h.width)
    t0 = time.perf_counter()
    mu, sigma = reproducible_bbvi(model, y_hat, SolverOptions(bbvi_steps=record.bbvi_steps, bbvi_lr=record.bbvi_lr))
    q_mean, q_std = bbc.q_params(mu.numpy(), sigma.numpy(), record.grid_exp)
    xi = bbc.recover_side_info(coder, z_sym, q_mean, q_std, record, fr.side_info_bits, _pad_seed(y_hat))
    return DecodedBB(rgb, output_pixels(rgb, h.grayscale), h, xi, file_bits, fr.side_info_bits,
                     time.perf_counter() - t0)


__all__ = ["BBStats", "DecodedBB", "EncodedBB", "METHOD", "bits_back_accounting", "decode_bytes_bb",
           "encode_image_bb", "model_for_bb_header", "seeded_side_info"]
