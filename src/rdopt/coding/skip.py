"""Skip mode of video P-frames: the payload of a frame's ``skip`` stream (numpy and constriction; no torch).

A P-frame ``t`` of a ``.rdov`` GoP may carry one extra stream named ``skip_t`` of kind ``skip``
(:data:`rdopt.coding.codes.LATENT_KIND_CODES`). Without it the frame is decoded as always. Its payload::

    1 byte   mode
             1 = whole-frame skip: the frame has no residual streams; x̂_t is the motion-compensated prediction
             2 = block skip: the frame's 16×16 blocks (of the padded frame, in raster order) marked in the mask
                 take the prediction, the others the decoded frame
    mode 2 only:
    1 byte   p (1 … 255): the mask is coded as i.i.d. Bernoulli(p / 256) (1 = skipped)
    v        rows, v cols (varints, 1 … 1024): the block grid of the padded frame
    4·k      the mask: constriction's ANS stack (``constriction.stream.stack.AnsCoder``), k 32-bit words,
             little-endian, the rows·cols blocks encoded in reverse so that block 0 comes off first

The grid is stored (two bytes) although the decoder knows it from the frame size and the model: a mask of
another grid is refused by name, and ``rdopt info`` counts skipped blocks without the model (the padding
multiple is the model's and the header's tight-padding flag). The mask must decode to exactly rows·cols symbols, leave the coder empty, and mark
at least one block. Every size is checked before anything is allocated; anything else is a one-line
:class:`rdopt.coding.container.BitstreamError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .container import MAX_SIDE, BitstreamError, read_varint, varint

BLOCK = 16
"""Side of a skip block in pixels (of the padded frame)."""

MAX_GRID = MAX_SIDE // BLOCK
"""The most blocks a row or column of a frame has."""

KIND = "skip"
"""The stream kind of a skip stream."""

MODE_CODES = {"frame": 1, "blocks": 2}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}


def stream_name(frame: int) -> str:
    """The name of frame ``frame``'s skip stream within its GoP (``skip_3``)."""
    return f"skip_{frame}"


def block_grid(height: int, width: int) -> tuple[int, int]:
    """``(rows, cols)`` of 16×16 blocks covering a (padded) frame of ``height × width`` pixels (the last row
    and column may be partial)."""
    return -(-int(height) // BLOCK), -(-int(width) // BLOCK)


def max_mask_words(blocks: int) -> int:
    """The most 32-bit words a mask of ``blocks`` symbols can take: at most 8 bits per symbol (the rarer
    symbol has probability ≥ 1/256), plus the coder's 64-bit head and a word of rounding, with margin."""
    return (9 * blocks + 31) // 32 + 4


@dataclass(frozen=True)
class FrameSkip:
    """What a P-frame's skip stream says: ``mode`` ``"frame"`` (the whole frame) or ``"blocks"`` with ``mask``,
    a ``rows × cols`` bool array of the padded frame's 16×16 blocks (True: the block takes the prediction)."""

    mode: str
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODE_CODES:
            raise ValueError(f"skip mode must be 'frame' or 'blocks', got {self.mode!r}")
        if self.mode == "blocks":
            m = np.asarray(self.mask)
            if m.ndim != 2 or m.dtype != np.bool_ or not m.any():
                raise ValueError("a block skip needs a 2-D bool mask with at least one skipped block")
            object.__setattr__(self, "mask", m)
        elif self.mask is not None:
            raise ValueError("a whole-frame skip has no mask")

    def count(self, rows: int, cols: int) -> int:
        """Skipped blocks (all of them for a whole-frame skip)."""
        return rows * cols if self.mode == "frame" else int(self.mask.sum())


def probability_byte(mask: np.ndarray) -> int:
    """The byte ``p`` whose Bernoulli(p / 256) fits the fraction of skipped blocks (1 … 255)."""
    m = np.asarray(mask, dtype=bool)
    return int(min(max(round(256.0 * float(m.sum()) / max(m.size, 1)), 1), 255))


def mask_bits(skipped: int, blocks: int, p: int) -> float:
    """Ideal bits of a mask of ``blocks`` symbols, ``skipped`` of them 1, under Bernoulli(p / 256)."""
    q = p / 256.0
    return -(skipped * math.log2(q) + (blocks - skipped) * math.log2(1.0 - q))


def _bernoulli(p: int):
    import constriction

    return constriction.stream.model.Bernoulli(p / 256.0, perfect=False)


def pack_skip(skip: FrameSkip) -> bytes:
    """The payload of a skip stream."""
    if skip.mode == "frame":
        return bytes([MODE_CODES["frame"]])
    import constriction

    mask = np.asarray(skip.mask, dtype=bool).reshape(-1)
    p = probability_byte(mask)
    rows, cols = skip.mask.shape
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(mask.astype(np.int32), _bernoulli(p))
    return (bytes([MODE_CODES["blocks"], p]) + varint(rows) + varint(cols)
            + np.asarray(coder.get_compressed(), dtype="<u4").tobytes())


def unpack_skip(data: bytes, rows: int | None = None, cols: int | None = None, where: str = "") -> FrameSkip:
    """Parse and check a skip stream's payload; ``rows × cols``: the block grid of the padded frame it belongs
    to (``None``: the grid it states, as ``rdopt info`` reads it). ``where`` names the frame in errors, e.g.
    ``"frame 2 of a GoP: "``."""
    data = bytes(data)
    if not data:
        raise BitstreamError(f"corrupt bitstream: {where}empty skip stream")
    mode = MODE_NAMES.get(data[0])
    if mode is None:
        raise BitstreamError(f"corrupt bitstream: {where}unknown skip mode {data[0]}")
    if mode == "frame":
        if len(data) != 1:
            raise BitstreamError(f"corrupt bitstream: {where}a whole-frame skip stream has {len(data)} bytes, not 1")
        return FrameSkip("frame")
    if len(data) < 4:
        raise BitstreamError(f"corrupt bitstream: {where}a block skip stream of {len(data)} bytes (it starts with "
                             "mode, probability and the block grid)")
    p = data[1]
    if p == 0:
        raise BitstreamError(f"corrupt bitstream: {where}block skip probability 0")
    try:
        got_rows, pos = read_varint(data, 2, 2)
        got_cols, pos = read_varint(data, pos, 2)
    except BitstreamError:
        raise BitstreamError(f"corrupt bitstream: {where}a block skip stream whose block grid is truncated or too "
                             "long") from None
    if not (1 <= got_rows <= MAX_GRID and 1 <= got_cols <= MAX_GRID):
        raise BitstreamError(f"corrupt bitstream: {where}a block skip grid of {got_rows}×{got_cols} blocks (1 … "
                             f"{MAX_GRID} each way)")
    if rows is not None and cols is not None and (got_rows, got_cols) != (rows, cols):
        raise BitstreamError(f"corrupt bitstream: {where}a block skip mask of {got_rows}×{got_cols} blocks, the frame "
                             f"has {rows}×{cols}")
    rows, cols = got_rows, got_cols
    blocks = rows * cols
    body = data[pos:]
    if len(body) % 4:
        raise BitstreamError(f"corrupt bitstream: {where}a block skip mask of {len(body)} bytes (not whole 32-bit words)")
    if len(body) // 4 > max_mask_words(blocks):
        raise BitstreamError(f"corrupt bitstream: {where}a block skip mask of {len(body)} bytes is too long for "
                             f"{blocks} blocks (at most {4 * max_mask_words(blocks)})")
    import constriction

    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
    try:
        coder = constriction.stream.stack.AnsCoder(words) if len(words) else constriction.stream.stack.AnsCoder()
        mask = np.asarray(coder.decode(_bernoulli(p), blocks), dtype=np.int64)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise BitstreamError(f"corrupt bitstream: {where}block skip mask does not decode "
                             f"({(str(e).splitlines() or [''])[0]})") from None
    if not coder.is_empty():
        raise BitstreamError(f"corrupt bitstream: {where}the block skip mask holds more data than {blocks} blocks")
    if not mask.any():
        raise BitstreamError(f"corrupt bitstream: {where}a block skip mask without a skipped block")
    return FrameSkip("blocks", mask.reshape(rows, cols).astype(bool))


__all__ = ["BLOCK", "KIND", "MODE_CODES", "FrameSkip", "stream_name", "block_grid", "max_mask_words",
           "probability_byte", "mask_bits", "pack_skip", "unpack_skip"]
