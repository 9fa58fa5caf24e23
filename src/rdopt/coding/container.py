"""The ``.rdo`` bitstream container (format version 1).

A ``.rdo`` file is untrusted input: it holds no pickles, every size is checked against hard limits and
against the rest of the file before anything is allocated, and a CRC-32 over the whole file catches
corruption and truncation before any entropy decoding starts. Layout (little-endian)::

    offset  size  field
    0       4     magic  b"RDO1"
    4       1     format version (1)
    5       1     flags: bit 0 grayscale source, bit 1 alpha dropped (other bits must be 0)
    6       1     n = length of the model id
    7       n     model id (ASCII, e.g. "rdopt-msh-q3")
    7+n     8     weight hash (first 8 bytes of the model's canonical SHA-256)
    +8      1     encoding method code (informational: amortized, sga, …)
    +1      2     optimization steps (informational)
    +2      2     image height (1 … 16384)
    +2      2     image width  (1 … 16384)
    +2      1     number of entropy-coded strings k (1 … 8)
    +1      k·v   k string lengths as unsigned LEB128 varints
    …       Σ     the strings, in order (for a hyperprior: y then z, as CompressAI orders them)
    end-4   4     CRC-32 of everything before it

The latent shapes are not stored: they follow from the image size and the model (checked on decode).
The header costs about 40 bytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"RDO1"
VERSION = 1
MAX_SIDE = 16384
MAX_STRINGS = 8
MAX_STRING_BYTES = 1 << 30
METHODS = ("amortized", "sga", "noise", "ste", "map", "danneal")


class BitstreamError(ValueError):
    """A .rdo file that is corrupt, truncated, or not for this model."""


@dataclass(frozen=True)
class Header:
    model_id: str
    weight_hash: bytes  # 8 bytes
    height: int
    width: int
    grayscale: bool = False
    alpha_dropped: bool = False
    method: str = "amortized"
    steps: int = 0


@dataclass(frozen=True)
class RdoFile:
    header: Header
    strings: list[bytes]

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.strings)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(5):  # 5 × 7 bits is enough for MAX_STRING_BYTES
        if pos >= len(buf):
            raise BitstreamError("truncated bitstream (in a string length)")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos
    raise BitstreamError("corrupt bitstream: string length too long")


def pack(f: RdoFile) -> bytes:
    h = f.header
    mid = h.model_id.encode("ascii")
    if not 1 <= len(mid) <= 255:
        raise ValueError(f"model id must be 1-255 ASCII bytes: {h.model_id!r}")
    if len(h.weight_hash) != 8:
        raise ValueError("weight hash must be 8 bytes")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise ValueError(f"image size {h.width}×{h.height} outside 1…{MAX_SIDE}")
    if not 1 <= len(f.strings) <= MAX_STRINGS:
        raise ValueError(f"need 1-{MAX_STRINGS} strings, got {len(f.strings)}")
    flags = (1 if h.grayscale else 0) | (2 if h.alpha_dropped else 0)
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", VERSION, flags, len(mid))
    out += mid + h.weight_hash
    out += struct.pack("<BHHHB", METHODS.index(h.method), min(h.steps, 0xFFFF), h.height, h.width, len(f.strings))
    for s in f.strings:
        out += _varint(len(s))
    for s in f.strings:
        out += s
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


def unpack(data: bytes) -> RdoFile:
    """Parse and validate a ``.rdo`` file (structure and CRC; the model check happens on decode)."""
    if not data:
        raise BitstreamError("empty bitstream (0 bytes)")
    if len(data) < len(MAGIC) + 3 + 1 + 8 + 8 + 1 + 4:
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise BitstreamError("not an rdopt bitstream (bad magic)")
        raise BitstreamError(f"truncated bitstream ({len(data)} bytes)")
    if data[:4] != MAGIC:
        raise BitstreamError("not an rdopt bitstream (bad magic)")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise BitstreamError("corrupt or truncated bitstream (checksum mismatch)")
    body = data[:-4]
    version, flags, n = struct.unpack_from("<BBB", body, 4)
    if version != VERSION:
        raise BitstreamError(f"unsupported bitstream format version {version} (this rdopt reads {VERSION})")
    if flags & ~0b11:
        raise BitstreamError(f"corrupt bitstream: unknown flags {flags:#x}")
    pos = 7
    if pos + n + 8 + 8 > len(body):
        raise BitstreamError("truncated bitstream (header)")
    try:
        model_id = body[pos : pos + n].decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("corrupt bitstream: model id is not ASCII") from None
    pos += n
    weight_hash = bytes(body[pos : pos + 8])
    pos += 8
    method_code, steps, height, width, k = struct.unpack_from("<BHHHB", body, pos)
    pos += 8
    if method_code >= len(METHODS):
        raise BitstreamError(f"corrupt bitstream: unknown method code {method_code}")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"corrupt bitstream: image size {width}×{height} outside 1…{MAX_SIDE}")
    if not 1 <= k <= MAX_STRINGS:
        raise BitstreamError(f"corrupt bitstream: {k} strings")
    lengths = []
    for _ in range(k):
        length, pos = _read_varint(body, pos)
        if length > MAX_STRING_BYTES:
            raise BitstreamError("corrupt bitstream: string length out of range")
        lengths.append(length)
    if pos + sum(lengths) != len(body):
        raise BitstreamError(
            f"corrupt bitstream: strings need {sum(lengths)} bytes, {len(body) - pos} present"
        )
    strings = []
    for length in lengths:
        strings.append(bytes(body[pos : pos + length]))
        pos += length
    header = Header(
        model_id=model_id, weight_hash=weight_hash, height=height, width=width,
        grayscale=bool(flags & 1), alpha_dropped=bool(flags & 2), method=METHODS[method_code], steps=steps,
    )
    return RdoFile(header, strings)


# ---------------------------------------------------------------------------------------------------
# Plausibility checks for decoding an untrusted file (additive: they read a parsed header, never change
# the format). A valid CRC only proves the file is intact, not that its sizes are honest: these run
# before the decoder allocates anything for the image.

# Least memory any decode of a padded pixel needs, whatever the model: the output (3 bytes) and the
# hard latents with their prior parameters (≥ 4 floats per latent, ≥ 24 latent channels at 1/16²).
MIN_DECODE_BYTES_PER_PIXEL = 8


def padded_pixels(header: Header, multiple: int = 64) -> int:
    """Pixels of the image once padded to the model's multiple (what the decoder works on)."""
    return (-(-header.height // multiple) * multiple) * (-(-header.width // multiple) * multiple)


def min_decode_bytes(header: Header) -> int:
    """A lower bound of the memory needed to decode a file with this header (any model)."""
    return MIN_DECODE_BYTES_PER_PIXEL * padded_pixels(header)


def check_payload_plausible(f: RdoFile, symbols: list[int], min_bits: list[float]) -> None:
    """Refuse strings too short for the image size the header claims.

    ``symbols[i]`` is the number of symbols string ``i`` must hold for the header's size and
    ``min_bits[i]`` the fewest bits the model's coder can spend on one (its most probable symbol); an
    rANS string holds at least their product minus its 32-bit final state."""
    if len(symbols) != len(f.strings):
        raise BitstreamError(f"corrupt bitstream: {len(f.strings)} strings, the model codes {len(symbols)}")
    for i, (s, n, b) in enumerate(zip(f.strings, symbols, min_bits)):
        need = int((n * b - 32) // 8)
        if len(s) < need:
            raise BitstreamError(
                f"corrupt bitstream: string {i} has {len(s)} bytes, a {f.header.width}×{f.header.height} image "
                f"needs at least {need} (its header's size does not match its data)"
            )
