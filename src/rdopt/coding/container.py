"""The ``.rdo`` bitstream container (format version 2; version 1 files are still read).

A ``.rdo`` file is untrusted input: it holds no pickles, every size is checked against hard limits and
against the rest of the file before anything is allocated, and a CRC-32 over the whole file catches
corruption and truncation before any entropy decoding starts. Every enumerated field is a fixed numeric
code from :mod:`rdopt.coding.codes`; an unknown code is an error.

Version 2 (little-endian; ``v`` = unsigned LEB128 varint)::

    offset  size  field
    0       4     magic  b"RDO1"
    4       1     format version (2)
    5       1     flags: bit 0 grayscale source, bit 1 alpha dropped (other bits must be 0)
    6       1     n = length of the model id
    7       n     model id (ASCII, e.g. "rdopt-msh-q3")
    7+n     8     weight hash (first 8 bytes of the model's canonical SHA-256)
    +8      1     method code (METHOD_CODES; informational)
    +1      1     solver code (SOLVER_CODES; informational)
    +1      v     optimization steps (informational, ≤ 10⁶)
    …       2     image height (1 … 16384)
    +2      2     image width  (1 … 16384)
    +2      1     number of frames F (1 … 255)
    then per frame (a chunk header):
            1     frame type code (FRAME_TYPE_CODES: I, P, B)
            v     side-information bits (bits-back: bits taken back from the decoder's stack that the
                  payload does not carry; 0 without bits-back)
            1     number of named streams k (1 … 16)
            per stream: 1 latent kind code (LATENT_KIND_CODES), 1 name length m (1 … 32),
                        m name bytes (ASCII), v payload length
    …       Σ     the payloads, frame by frame, stream by stream
    end-4   4     CRC-32 of everything before it

Version 1 (read only; what rdopt wrote before): after the weight hash ``method (1), steps (u16),
height (u16), width (u16), k (1), k varint lengths, the strings (y then z), CRC-32`` — one image frame
whose streams are the codec's latents in order.

The latent shapes are not stored: they follow from the image size and the model (checked on decode).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .codes import (FRAME_TYPE_CODES, FRAME_TYPE_NAMES, LATENT_KIND_CODES, LATENT_KIND_NAMES, METHOD_CODES,
                    METHOD_NAMES, SOLVER_CODES, SOLVER_NAMES)

MAGIC = b"RDO1"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_SIDE = 16384
MAX_STRINGS = 8  # v1
MAX_STREAMS = 16  # v2, per frame
MAX_FRAMES = 255
MAX_NAME = 32
MAX_STEPS = 1_000_000
MAX_STRING_BYTES = 1 << 30
MAX_SIDE_INFO_BITS = 1 << 40
METHODS = tuple(METHOD_CODES)


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
    solver: str = "joint"


@dataclass(frozen=True)
class Stream:
    """One named entropy-coded stream of a frame."""

    name: str
    kind: str
    data: bytes


@dataclass(frozen=True)
class Frame:
    """A per-frame chunk: its type, named streams and bits-back side-information accounting."""

    type: str
    streams: tuple[Stream, ...]
    side_info_bits: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))

    def stream(self, name: str) -> Stream:
        for s in self.streams:
            if s.name == name:
                return s
        raise BitstreamError(f"corrupt bitstream: no stream named {name!r} in a {self.type} frame")


@dataclass(frozen=True)
class RdoFile:
    header: Header
    frames: tuple[Frame, ...]
    version: int = field(default=VERSION, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))

    @property
    def strings(self) -> list[bytes]:
        """Every stream's payload, in file order."""
        return [s.data for f in self.frames for s in f.streams]

    @property
    def payload_bytes(self) -> int:
        return sum(len(s) for s in self.strings)


# ---------------------------------------------------------------------------------------- varints
def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"varints are unsigned, got {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf: bytes, pos: int, max_bytes: int = 5) -> tuple[int, int]:
    value = shift = 0
    for _ in range(max_bytes):  # 5 × 7 bits is enough for MAX_STRING_BYTES
        if pos >= len(buf):
            raise BitstreamError("truncated bitstream (in a varint)")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos
    raise BitstreamError("corrupt bitstream: varint too long")


def join_strings(strings: list[bytes]) -> bytes:
    """Several entropy-coded strings as one stream: each string's length as a varint, then the strings."""
    return b"".join(varint(len(s)) for s in strings) + b"".join(strings)


def split_strings(data: bytes, count: int) -> list[bytes]:
    """The ``count`` strings of a :func:`join_strings` stream; a stream whose lengths do not add up to its size
    exactly is refused (:class:`BitstreamError`)."""
    lengths, pos = [], 0
    for _ in range(count):
        n, pos = read_varint(data, pos)
        lengths.append(n)
    if pos + sum(lengths) != len(data):
        raise BitstreamError(f"corrupt bitstream: a stream of {count} strings declares {sum(lengths)} bytes, "
                             f"holds {len(data) - pos}")
    out = []
    for n in lengths:
        out.append(bytes(data[pos : pos + n]))
        pos += n
    return out


def code_of(table, name: str, what: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(table)}") from None


# ---------------------------------------------------------------------------------------- writing
def _check_header(h: Header) -> bytes:
    mid = h.model_id.encode("ascii")
    if not 1 <= len(mid) <= 255:
        raise ValueError(f"model id must be 1-255 ASCII bytes: {h.model_id!r}")
    if len(h.weight_hash) != 8:
        raise ValueError("weight hash must be 8 bytes")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise ValueError(f"image size {h.width}×{h.height} outside 1…{MAX_SIDE}")
    return mid


def _flags(h: Header) -> int:
    return (1 if h.grayscale else 0) | (2 if h.alpha_dropped else 0)


def pack_frames(frames) -> bytes:
    """The per-frame chunk headers (frame type, side-information bits, named streams with their kind and
    length), then every payload, frame by frame and stream by stream: the frame section of a ``.rdo`` v2
    file and of a ``.rdov`` GoP chunk."""
    out = bytearray()
    for fr in frames:
        if not 1 <= len(fr.streams) <= MAX_STREAMS:
            raise ValueError(f"a frame needs 1-{MAX_STREAMS} streams, got {len(fr.streams)}")
        names = [s.name for s in fr.streams]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate stream names in a frame: {names}")
        if not 0 <= fr.side_info_bits <= MAX_SIDE_INFO_BITS:
            raise ValueError(f"side-information bits out of range: {fr.side_info_bits}")
        out += struct.pack("<B", code_of(FRAME_TYPE_CODES, fr.type, "frame type"))
        out += varint(fr.side_info_bits)
        out += struct.pack("<B", len(fr.streams))
        for s in fr.streams:
            name = s.name.encode("ascii")
            if not 1 <= len(name) <= MAX_NAME:
                raise ValueError(f"stream names must be 1-{MAX_NAME} ASCII bytes: {s.name!r}")
            if len(s.data) > MAX_STRING_BYTES:
                raise ValueError(f"stream {s.name!r} is larger than {MAX_STRING_BYTES} bytes")
            out += struct.pack("<BB", code_of(LATENT_KIND_CODES, s.kind, "latent kind"), len(name)) + name
            out += varint(len(s.data))
    for s in (s for fr in frames for s in fr.streams):
        out += s.data
    return bytes(out)


def pack(f: RdoFile) -> bytes:
    """Serialize as format version 2."""
    h = f.header
    mid = _check_header(h)
    if not 1 <= len(f.frames) <= MAX_FRAMES:
        raise ValueError(f"need 1-{MAX_FRAMES} frames, got {len(f.frames)}")
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", VERSION, _flags(h), len(mid))
    out += mid + h.weight_hash
    out += struct.pack("<BB", code_of(METHOD_CODES, h.method, "method"), code_of(SOLVER_CODES, h.solver, "solver"))
    out += varint(min(max(int(h.steps), 0), MAX_STEPS))
    out += struct.pack("<HHB", h.height, h.width, len(f.frames))
    out += pack_frames(f.frames)
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


def pack_v1(header: Header, strings: list[bytes]) -> bytes:
    """Serialize one image frame as format version 1 (what rdopt wrote before v2; kept so the tests can
    build v1 files). The method must have a v1 code; the solver is not recorded."""
    h = header
    mid = _check_header(h)
    if not 1 <= len(strings) <= MAX_STRINGS:
        raise ValueError(f"need 1-{MAX_STRINGS} strings, got {len(strings)}")
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", 1, _flags(h), len(mid))
    out += mid + h.weight_hash
    out += struct.pack("<BHHHB", code_of(METHOD_CODES, h.method, "method"), min(h.steps, 0xFFFF), h.height, h.width,
                       len(strings))
    for s in strings:
        out += varint(len(s))
    for s in strings:
        out += s
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


# ---------------------------------------------------------------------------------------- reading
class Reader:
    def __init__(self, body: bytes, pos: int):
        self.body, self.pos = body, pos

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.body):
            raise BitstreamError(f"truncated bitstream ({what})")
        b = bytes(self.body[self.pos : self.pos + n])
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, limit: int, what: str) -> int:
        v, self.pos = read_varint(self.body, self.pos, 6)
        if v > limit:
            raise BitstreamError(f"corrupt bitstream: {what} {v} out of range (at most {limit})")
        return v


def read_frames(r: Reader, count: int, where: str = "") -> tuple[Frame, ...]:
    """Parse the frame section :func:`pack_frames` writes: ``count`` frame chunk headers, then the payloads,
    which must fill the rest of ``r``'s body exactly (``where`` prefixes that error, e.g. ``"GoP 3 "``)."""
    chunks = []
    for _ in range(count):
        ftype = name_of(FRAME_TYPE_NAMES, r.unpack("<B", "frame header")[0], "frame type")
        side = r.varint(MAX_SIDE_INFO_BITS, "side-information bit count")
        (k,) = r.unpack("<B", "frame header")
        if not 1 <= k <= MAX_STREAMS:
            raise BitstreamError(f"corrupt bitstream: {k} streams in a frame")
        specs = []
        for _ in range(k):
            kind_code, m = r.unpack("<BB", "stream header")
            kind = name_of(LATENT_KIND_NAMES, kind_code, "latent kind")
            if not 1 <= m <= MAX_NAME:
                raise BitstreamError(f"corrupt bitstream: stream name of {m} bytes")
            try:
                name = r.take(m, "stream header").decode("ascii")
            except UnicodeDecodeError:
                raise BitstreamError("corrupt bitstream: stream name is not ASCII") from None
            if any(name == s[0] for s in specs):
                raise BitstreamError(f"corrupt bitstream: stream {name!r} twice in a frame")
            specs.append((name, kind, r.varint(MAX_STRING_BYTES, "stream length")))
        chunks.append((ftype, side, specs))
    return take_payloads(r, chunks, where)


def take_payloads(r: Reader, chunks, where: str = "") -> tuple[Frame, ...]:
    """The frames of parsed chunk headers ``(type, side-information bits, [(name, kind, length), …])``: their
    payloads, which must fill the rest of ``r``'s body exactly (checked before any is sliced)."""
    total = sum(length for _, _, specs in chunks for _, _, length in specs)
    if r.pos + total != len(r.body):
        raise BitstreamError(f"corrupt bitstream: {where}streams need {total} bytes, {len(r.body) - r.pos} present")
    return tuple(Frame(ftype, tuple(Stream(name, kind, r.take(length, "payload")) for name, kind, length in specs), side)
                 for ftype, side, specs in chunks)


def name_of(table, code: int, what: str) -> str:
    try:
        return table[code]
    except KeyError:
        raise BitstreamError(f"corrupt bitstream: unknown {what} code {code}") from None


def _check_size(height: int, width: int) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"corrupt bitstream: image size {width}×{height} outside 1…{MAX_SIDE}")


def unpack(data: bytes) -> RdoFile:
    """Parse and validate a ``.rdo`` file of any readable version (structure and CRC; the model check
    happens on decode). v1 files come back as one ``I`` frame whose streams are named by position
    (``"0"``, ``"1"`` …, kind ``latent``) — :func:`rdopt.api.image.coded_latents` names them by the model."""
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
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"unsupported bitstream format version {version} (this rdopt reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
    if flags & ~0b11:
        raise BitstreamError(f"corrupt bitstream: unknown flags {flags:#x}")
    r = Reader(body, 7)
    try:
        model_id = r.take(n, "header").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("corrupt bitstream: model id is not ASCII") from None
    weight_hash = r.take(8, "header")
    if version == 1:
        return _unpack_v1(r, model_id, weight_hash, flags)
    method = name_of(METHOD_NAMES, r.unpack("<B", "header")[0], "method")
    solver = name_of(SOLVER_NAMES, r.unpack("<B", "header")[0], "solver")
    steps = r.varint(MAX_STEPS, "step count")
    height, width, nframes = r.unpack("<HHB", "header")
    _check_size(height, width)
    if not 1 <= nframes <= MAX_FRAMES:
        raise BitstreamError(f"corrupt bitstream: {nframes} frames")
    frames = read_frames(r, nframes)
    header = Header(model_id=model_id, weight_hash=weight_hash, height=height, width=width,
                    grayscale=bool(flags & 1), alpha_dropped=bool(flags & 2), method=method, steps=steps,
                    solver=solver)
    return RdoFile(header, tuple(frames), version=2)


def _unpack_v1(r: Reader, model_id: str, weight_hash: bytes, flags: int) -> RdoFile:
    method_code, steps, height, width, k = r.unpack("<BHHHB", "header")
    method = name_of(METHOD_NAMES, method_code, "method")
    _check_size(height, width)
    if not 1 <= k <= MAX_STRINGS:
        raise BitstreamError(f"corrupt bitstream: {k} strings")
    lengths = [r.varint(MAX_STRING_BYTES, "string length") for _ in range(k)]
    if r.pos + sum(lengths) != len(r.body):
        raise BitstreamError(f"corrupt bitstream: strings need {sum(lengths)} bytes, {len(r.body) - r.pos} present")
    streams = tuple(Stream(str(i), "latent", r.take(length, "payload")) for i, length in enumerate(lengths))
    header = Header(model_id=model_id, weight_hash=weight_hash, height=height, width=width,
                    grayscale=bool(flags & 1), alpha_dropped=bool(flags & 2), method=method, steps=steps)
    return RdoFile(header, (Frame("I", streams),), version=1)


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


# Decoded-size limit, independent of the memory available (in the spirit of Pillow's MAX_IMAGE_PIXELS): a
# file of a few kilobytes with a valid CRC and streams padded to the plausibility bound below can claim
# 16384×16384, which only the free-memory budget would stop — on a large machine after minutes of entropy
# decoding and synthesis. 64 Mi pixels (8192×8192, per frame of a video) is above any photo or video frame
# rdopt is meant for (encoding that size takes about 45 GB, README "Sizes"), and its decode needs about 5 GB; a
# larger image is decoded only when the caller raises the limit (``max_pixels``, ``rdopt decode --max-pixels``).
DEFAULT_MAX_PIXELS = 8192 * 8192


def check_pixels(width: int, height: int, max_pixels: int | None = DEFAULT_MAX_PIXELS, what: str = "image") -> None:
    """Refuse, from the header alone, an image (or video frame: ``what``) of more than ``max_pixels`` pixels
    (``None``: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise BitstreamError(f"the bitstream's {width}×{height} {what} has {width * height} pixels, more than the "
                             f"decoding limit of {max_pixels} (--max-pixels raises it)")


def check_payload_plausible(f: RdoFile, symbols: list[int], min_bits: list[float]) -> None:
    """Refuse strings too short for the image size the header claims (every stream of the file, in file
    order; see :func:`check_streams_plausible`)."""
    check_streams_plausible(f.header, f.strings, symbols, min_bits)


def check_streams_plausible(header: Header, strings: list[bytes], symbols: list[int], min_bits: list[float],
                            names: list[str] | None = None) -> None:
    """Refuse streams too short for the image size the header claims.

    ``symbols[i]`` is the number of symbols stream ``i`` must hold for the header's size and
    ``min_bits[i]`` the fewest bits the model's coder can spend on one (its most probable symbol); an
    rANS string holds at least their product minus its 32-bit final state. ``names``: the streams' names
    for the message (default: their positions)."""
    if len(symbols) != len(strings) or len(min_bits) != len(strings):
        raise BitstreamError(f"corrupt bitstream: {len(strings)} strings, the model codes {len(symbols)}")
    for i, (s, n, b) in enumerate(zip(strings, symbols, min_bits)):
        need = int((n * b - 32) // 8)
        if len(s) < need:
            what = f"stream {names[i]!r}" if names else f"string {i}"
            raise BitstreamError(
                f"corrupt bitstream: {what} has {len(s)} bytes, a {header.width}×{header.height} image "
                f"needs at least {need} (its header's size does not match its data)"
            )
