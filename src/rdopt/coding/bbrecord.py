"""The ``bb`` record of a bits-back frame and the bits-back accounting of a file — struct only (``rdopt info``
reads them without numpy or torch). See :mod:`rdopt.coding.bitsback` for the streams."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .container import BitstreamError, RdoFile

BB_FORMAT = 1
BB_METHOD = "sga-bb"


# ------------------------------------------------------------------------------------------ the bb record
@dataclass(frozen=True)
class BBRecord:
    """Contents of the ``bb`` stream (little-endian): format (1 byte), grid exponent e (δ = 2⁻ᵉ, 1 byte),
    K (ẑ symbols in −K…K, u16), BBVI steps (u32), BBVI learning rate (float64), padding words (u32),
    checksum of ξ (8 bytes)."""

    grid_exp: int
    z_range: int
    bbvi_steps: int
    bbvi_lr: float
    pad_words: int
    checksum: bytes

    _FMT = "<BBHIdI8s"

    def pack(self) -> bytes:
        return struct.pack(self._FMT, BB_FORMAT, self.grid_exp, self.z_range, self.bbvi_steps, self.bbvi_lr,
                           self.pad_words, self.checksum)

    @classmethod
    def unpack(cls, data: bytes) -> "BBRecord":
        if len(data) != struct.calcsize(cls._FMT):
            raise BitstreamError(f"corrupt bitstream: a bits-back record of {len(data)} bytes")
        fmt, e, k, steps, lr, pad, crc = struct.unpack(cls._FMT, data)
        if fmt != BB_FORMAT:
            raise BitstreamError(f"unsupported bits-back record format {fmt}")
        if not (0 <= e <= 16 and 1 <= k <= 1 << 14 and steps <= 1_000_000 and pad <= 1 << 26
                and math.isfinite(lr) and 0 < lr < 1):
            raise BitstreamError("corrupt bitstream: bits-back record out of range")
        return cls(e, k, steps, lr, pad, crc)



def bits_back_accounting(f: RdoFile, file_bytes: int) -> dict | None:
    """The bits-back accounting of a parsed file (no model needed): ``None`` for other files."""
    if f.header.method != BB_METHOD:
        return None
    if len(f.frames) != 1 or sorted(s.name for s in f.frames[0].streams) != ["bb", "y", "z"]:
        raise BitstreamError("corrupt bitstream: a bits-back image has one frame with the streams y, z and bb")
    fr = f.frames[0]
    record = BBRecord.unpack(fr.stream("bb").data)
    file_bits = 8 * file_bytes
    pixels = f.header.width * f.header.height
    return {"file_bits": file_bits, "side_info_bits": fr.side_info_bits,
            "net_bits": file_bits - fr.side_info_bits, "net_bpp": (file_bits - fr.side_info_bits) / pixels,
            "y_stream_bits": 8 * len(fr.stream("y").data), "z_stream_bits": 8 * len(fr.stream("z").data),
            "grid": f"2^-{record.grid_exp}", "z_range": record.z_range, "bbvi_steps": record.bbvi_steps,
            "bbvi_lr": record.bbvi_lr, "padding_bits": 32 * record.pad_words,
            "side_info_sha256_prefix": record.checksum.hex()}


__all__ = ["BBRecord", "BB_FORMAT", "BB_METHOD", "bits_back_accounting"]
