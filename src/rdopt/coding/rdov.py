"""The ``.rdov`` video bitstream container (video form, format version 1): a header, then one chunk per
GoP, each with its own length and CRC-32, so that a decoder streams the file GoP by GoP in bounded memory.

Like the image form (:mod:`rdopt.coding.container`) it is untrusted input: no pickles, every enumerated
field is a fixed code of :mod:`rdopt.coding.codes` (an unknown code is an error), every size is checked
against hard limits and against the bytes actually present before anything is allocated, and a GoP's
CRC is checked before any of its streams is entropy decoded. The magic differs from the image form's
(``RDOV`` vs ``RDO1``), so neither reader mistakes one for the other.

Layout (little-endian; ``v`` = unsigned LEB128 varint)::

    header
    offset  size  field
    0       4     magic  b"RDOV"
    4       1     format version (1)
    5       1     flags: bit 0 full-range YUV (the source's colour range), bit 1 grayscale source (every
                  frame coded had R = G = B: decoders write grayscale video), bit 2 tight padding (frames were
                  padded to the codec's own multiple, :attr:`VideoCodec.pad_multiple`, e.g. 16; clear: to
                  its legacy multiple, :attr:`VideoCodec.legacy_pad_multiple`, 64 or more), bit 3 compact frame
                  chunks (the header holds a stream layout; below); other bits must be 0
    6       1     n = length of the model id (1 … 255)
    7       n     model id (ASCII, e.g. "rdopt-video-q3")
    7+n     8     weight hash (first 8 bytes of the model's canonical SHA-256, :meth:`GopCodec.weight_hash`)
    +8      1     method code (METHOD_CODES; informational)
    +1      1     solver code (SOLVER_CODES; informational)
    +1      v     optimization steps per GoP (informational, ≤ 10⁶)
    …       2     visible frame height (1 … 16384)
    +2      2     visible frame width  (1 … 16384)
    +2      v     number of frames N (1 … 100000)
    …       v     GoP size G (1 … 255): every GoP has G frames but the last, which has 1 … G
    …       v     frame rate numerator   (1 … 2³¹)
    …       v     frame rate denominator (1 … 2³¹)
    …       1     colour matrix code (MATRIX_CODES: 0 = none (RGB source), 1 = BT.709, 2 = BT.601): the
                  Y'CbCr matrix YUV inputs were converted with, and the one a .y4m output uses
    flag bit 3 only, the stream layout (:class:`FrameLayout`):
    …       1     number of frame types T (1 … 3)
                  per type: 1 frame type code (FRAME_TYPE_CODES, each at most once), 1 number of streams s (1 … 8),
                            per stream: 1 latent kind code, 1 base name length m (1 … 28), m base name bytes (ASCII)
                            (the base names of a type are distinct)
    …       4     CRC-32 of the header bytes before it

    then ⌈N / G⌉ GoP chunks, in order:
            v     L = length of the chunk body (2 … 2³⁰)
            L     body:
                  v     index of the GoP's first frame (must be the frames seen so far)
                  1     number of frames F of this GoP (min(G, N − first frame))
                  flag bit 3 clear, per frame (the image form's v2 frame chunk):
                        1     frame type code (FRAME_TYPE_CODES; I then P …)
                        v     side-information bits (bits-back; 0 without)
                        1     number of named streams k (1 … 16)
                        per stream: 1 latent kind code (LATENT_KIND_CODES), 1 name length m (1 … 32),
                                    m name bytes (ASCII), v payload length
                  flag bit 3 set, instead per frame t (0 … F − 1; a compact frame chunk):
                        1     frame type code (one the layout lists)
                        1     presence mask: bit i set = stream i of the type's layout is present (≥ 1 bit; none
                              beyond the layout's s); stream i is named ``{base}_{t}`` and has the layout's kind
                        v     payload length of each present stream, in layout order
                        (side-information bits are 0)
                  Σ     the payloads, frame by frame, stream by stream (exactly filling the body)
            4     CRC-32 of the length varint and the body

    the streams of a frame: the model's latents of that frame in the order of the GoP codec's latents
    (frame 0: y_0, z_0; frame t ≥ 1: motion, motion-hyper, residual, residual-hyper, named with suffix _t), then,
    for a P-frame that skips (skip mode), one stream ``skip_t`` of kind ``skip`` (code 7):
            1     mode: 1 = whole-frame skip — the frame's residual and residual-hyper streams are absent,
                  x̂_t is the motion-compensated prediction; 2 = block skip — all four latent streams, and
                  x̂_t = M·prediction + (1 − M)·x̂_t with M the mask of 16×16 blocks of the padded frame
            mode 2 only:
            1     p (1 … 255): the mask's symbols are i.i.d. Bernoulli(p / 256)
            v     rows, v cols: the block grid, ⌈padded height / 16⌉ × ⌈padded width / 16⌉ (must be the frame's)
            4·k   the mask in raster order, ANS-coded (constriction's stack coder; 32-bit little-endian words)
    (:mod:`rdopt.coding.skip`). A frame without a skip stream decodes as before skip mode existed; skips apply
    frame by frame, so a skipped frame or block is the next frame's reference.

    end of file right after the last chunk (trailing bytes are an error).

The grayscale flag is the counterpart of the image form's (:class:`rdopt.coding.container.Header`
``grayscale``, bit 0 there; here bit 0 was already the colour range). It came after the first files of this
version, in a bit those files hold as 0: a file without it is read as it always was (a colour clip), and a
colour clip is written byte for byte as before. Readers that predate the flag refuse a grayscale file
(unknown flags) rather than decode it in colour.

Tight padding came after the first files of this version too: a frame is coded at its visible size rounded up to
the codec's :attr:`~rdopt.codecs.video.gop.VideoCodec.pad_multiple` (16 for a codec whose hyper-synthesis outputs are
cropped to their latents) instead of to 64. A writer sets the bit only when the two paddings differ for the
file's size, so a file whose size is a multiple of 64 is written byte for byte as before, and a file without the
bit decodes at the legacy padding exactly as it always did; readers that predate the bit refuse a file with it.

Compact frame chunks came after the first files of this version too: a frame's stream kinds and names follow from
the codec (the same for every frame of a type, with the frame's index in its GoP as suffix), so the header states
them once and each frame chunk holds its type, which streams are present and their lengths — 8 bytes for a P-frame
of four streams where the named form spends about 33 (≈ 5 % of a 176×144 P-frame at 0.15 bpp). A file without the
bit reads as it always did; readers that predate the bit refuse a file with it.

Skip streams came after the first files of this version, as a new stream kind: files without them decode
exactly as before, and readers that predate them refuse a file with one (unknown latent kind code 7) rather
than decode it wrongly. The decoder refuses a skip stream on an I-frame, one not last in its frame or misnamed,
an unknown mode, a whole-frame skip with residual streams or a payload beyond its mode byte, and a mask of
another grid, too long, not decoding to exactly its blocks, or marking none.

Which streams a frame must hold, and their shapes, follow from the model and the frame size (checked by
the decoder, :func:`rdopt.api.video.decode_video`). Truncation anywhere is found: inside a chunk by its
length and CRC, at a chunk boundary by the frame count of the header.

:class:`VideoFileWriter` writes GoP chunks as they are finished to a temporary file and assembles the
output when it is closed — with the frames written so far (the header's frame count is the count of
finished frames), so an interrupted encode still leaves a valid file of its finished GoPs.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Iterator

from .codes import (FRAME_TYPE_CODES, FRAME_TYPE_NAMES, LATENT_KIND_CODES, LATENT_KIND_NAMES, METHOD_CODES, METHOD_NAMES,
                    SOLVER_CODES, SOLVER_NAMES)
from .container import (MAX_NAME, MAX_SIDE, MAX_STEPS, MAX_STRING_BYTES, BitstreamError, Frame, Reader, code_of, name_of,
                        pack_frames, read_frames, read_varint, take_payloads, varint)

MAGIC = b"RDOV"
VERSION = 1
MAX_VIDEO_FRAMES = 100_000
MAX_GOP = 255
MAX_GOP_BYTES = 1 << 30
MAX_FPS_TERM = 1 << 31
READ_PIECE = 1 << 20  # read long chunks in pieces: a lying length never allocates more than is there

#: Y'CbCr matrix of YUV sources (fixed codes, as in :mod:`rdopt.coding.codes`)
MATRIX_CODES = MappingProxyType({"none": 0, "709": 1, "601": 2})
MATRIX_NAMES = MappingProxyType({v: k for k, v in MATRIX_CODES.items()})

#: header flag bits
FLAG_FULL_RANGE = 1
FLAG_GRAYSCALE = 2
FLAG_TIGHT_PADDING = 4
FLAG_COMPACT_FRAMES = 8
KNOWN_FLAGS = FLAG_FULL_RANGE | FLAG_GRAYSCALE | FLAG_TIGHT_PADDING | FLAG_COMPACT_FRAMES
MAX_LAYOUT_STREAMS = 8  # per frame type: the presence mask is one byte
MAX_BASE_NAME = MAX_NAME - 4  # room for the suffix "_254"


@dataclass(frozen=True)
class FrameLayout:
    """The streams a frame of each type may hold, in order: ``types = (("I", ((kind, base), …)), ("P", …))``.
    In a compact frame chunk, stream ``i`` of a type's layout is named ``{base}_{t}`` (``t`` the frame's index in its
    GoP) and has the layout's kind; a frame holds any non-empty subset, in layout order."""

    types: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]

    def __post_init__(self) -> None:
        types = tuple((str(t), tuple((str(k), str(b)) for k, b in entries)) for t, entries in self.types)
        object.__setattr__(self, "types", types)
        seen = [t for t, _ in types]
        if not 1 <= len(types) <= len(FRAME_TYPE_CODES) or len(set(seen)) != len(seen):
            raise ValueError(f"a frame layout lists 1-{len(FRAME_TYPE_CODES)} distinct frame types, got {seen}")
        for t, entries in types:
            code_of(FRAME_TYPE_CODES, t, "frame type")
            bases = [b for _, b in entries]
            if not 1 <= len(entries) <= MAX_LAYOUT_STREAMS or len(set(bases)) != len(bases):
                raise ValueError(f"frame type {t}: 1-{MAX_LAYOUT_STREAMS} streams of distinct base names, got {entries}")
            for kind, base in entries:
                code_of(LATENT_KIND_CODES, kind, "latent kind")
                if not (1 <= len(base) <= MAX_BASE_NAME and base.isascii()):
                    raise ValueError(f"base stream names must be 1-{MAX_BASE_NAME} ASCII bytes: {base!r}")

    def of(self, frame_type: str) -> tuple[tuple[str, str], ...]:
        for t, entries in self.types:
            if t == frame_type:
                return entries
        raise KeyError(frame_type)


@dataclass(frozen=True)
class VideoHeader:
    model_id: str
    weight_hash: bytes  # 8 bytes
    height: int  # visible size
    width: int
    frames: int  # frames in the file
    gop: int  # GoP size
    fps: Fraction = Fraction(25)
    matrix: str = "none"  # "709" / "601" for YUV sources, "none" for RGB sources
    full_range: bool = False
    method: str = "amortized"
    steps: int = 0
    solver: str = "joint"
    grayscale: bool = False  # every frame of the source had R = G = B: decode writes grayscale video
    tight_padding: bool = False  # frames were padded to the codec's own multiple, not to the legacy one (≥ 64)
    layout: FrameLayout | None = None  # compact frame chunks with this stream layout (None: named chunks)

    @property
    def num_gops(self) -> int:
        return -(-self.frames // self.gop)

    def gop_frames(self, index: int) -> int:
        """Frames of GoP ``index`` (the last may be shorter)."""
        return min(self.gop, self.frames - index * self.gop)


@dataclass(frozen=True)
class GopChunk:
    """One GoP: its index, first frame, the frames' chunks, and its size in the file (length varint,
    body and CRC)."""

    index: int
    first_frame: int
    frames: tuple[Frame, ...]
    chunk_bytes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))


# ---------------------------------------------------------------------------------------- writing
def _crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


def _fps_terms(fps) -> tuple[int, int]:
    try:
        f = Fraction(fps).limit_denominator(MAX_FPS_TERM)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"bad frame rate {fps!r}") from None
    if f <= 0 or f.numerator > MAX_FPS_TERM:
        raise ValueError(f"frame rate out of range: {fps}")
    return f.numerator, f.denominator


def pack_header(h: VideoHeader) -> bytes:
    mid = h.model_id.encode("ascii")
    if not 1 <= len(mid) <= 255:
        raise ValueError(f"model id must be 1-255 ASCII bytes: {h.model_id!r}")
    if len(h.weight_hash) != 8:
        raise ValueError("weight hash must be 8 bytes")
    if not (1 <= h.height <= MAX_SIDE and 1 <= h.width <= MAX_SIDE):
        raise ValueError(f"frame size {h.width}×{h.height} outside 1…{MAX_SIDE}")
    if not 1 <= h.frames <= MAX_VIDEO_FRAMES:
        raise ValueError(f"need 1-{MAX_VIDEO_FRAMES} frames, got {h.frames}")
    if not 1 <= h.gop <= MAX_GOP:
        raise ValueError(f"GoP size must be 1-{MAX_GOP}, got {h.gop}")
    num, den = _fps_terms(h.fps)
    out = bytearray(MAGIC)
    flags = ((FLAG_FULL_RANGE if h.full_range else 0) | (FLAG_GRAYSCALE if h.grayscale else 0)
             | (FLAG_TIGHT_PADDING if h.tight_padding else 0) | (FLAG_COMPACT_FRAMES if h.layout is not None else 0))
    out += struct.pack("<BBB", VERSION, flags, len(mid))
    out += mid + h.weight_hash
    out += struct.pack("<BB", code_of(METHOD_CODES, h.method, "method"), code_of(SOLVER_CODES, h.solver, "solver"))
    out += varint(min(max(int(h.steps), 0), MAX_STEPS))
    out += struct.pack("<HH", h.height, h.width)
    out += varint(h.frames) + varint(h.gop) + varint(num) + varint(den)
    out += struct.pack("<B", code_of(MATRIX_CODES, h.matrix, "colour matrix"))
    if h.layout is not None:
        out += struct.pack("<B", len(h.layout.types))
        for t, entries in h.layout.types:
            out += struct.pack("<BB", FRAME_TYPE_CODES[t], len(entries))
            for kind, base in entries:
                out += struct.pack("<BB", LATENT_KIND_CODES[kind], len(base)) + base.encode("ascii")
    out += _crc(bytes(out))
    return bytes(out)


def pack_compact_frames(frames, layout: FrameLayout) -> bytes:
    """The compact frame chunks of one GoP (module docstring), then every payload. A frame whose streams are not
    a subset of its type's layout, in order and named ``{base}_{t}``, or that has side-information bits, is a
    ``ValueError``."""
    out = bytearray()
    for t, fr in enumerate(frames):
        try:
            entries = layout.of(fr.type)
        except KeyError:
            raise ValueError(f"frame type {fr.type} is not in the compact layout") from None
        if fr.side_info_bits:
            raise ValueError("compact frame chunks carry no side-information bits")
        if not fr.streams:
            raise ValueError("a frame needs at least one stream")
        mask, pos, lengths = 0, 0, bytearray()
        for st in fr.streams:
            while pos < len(entries) and (entries[pos][0], f"{entries[pos][1]}_{t}") != (st.kind, st.name):
                pos += 1
            if pos == len(entries):
                raise ValueError(f"stream {st.name!r} ({st.kind}) of frame {t} does not fit the compact layout "
                                 f"{[f'{b}_{t}' for _, b in entries]}")
            if len(st.data) > MAX_STRING_BYTES:
                raise ValueError(f"stream {st.name!r} is larger than {MAX_STRING_BYTES} bytes")
            mask |= 1 << pos
            pos += 1
            lengths += varint(len(st.data))
        out += struct.pack("<BB", FRAME_TYPE_CODES[fr.type], mask) + lengths
    for st in (st for fr in frames for st in fr.streams):
        out += st.data
    return bytes(out)


def read_compact_frames(r: Reader, count: int, layout: FrameLayout, where: str = "") -> tuple[Frame, ...]:
    """Parse what :func:`pack_compact_frames` writes (payloads exactly filling the rest of ``r``'s body)."""
    chunks = []
    for t in range(count):
        ftype = name_of(FRAME_TYPE_NAMES, r.byte("frame header"), "frame type")
        try:
            entries = layout.of(ftype)
        except KeyError:
            raise BitstreamError(f"corrupt bitstream: {where}frame {t} is of type {ftype}, which the layout "
                                 "does not list") from None
        mask = r.byte("frame header")
        if mask == 0 or mask >> len(entries):
            raise BitstreamError(f"corrupt bitstream: {where}frame {t} has stream mask {mask:#04x} "
                                 f"(its layout has {len(entries)} streams)")
        specs = [(f"{base}_{t}", kind, r.varint(MAX_STRING_BYTES, "stream length"))
                 for i, (kind, base) in enumerate(entries) if mask >> i & 1]
        chunks.append((ftype, 0, specs))
    return take_payloads(r, chunks, where)


def pack_gop(chunk: GopChunk, layout: FrameLayout | None = None) -> bytes:
    """One GoP chunk (length, body, CRC); ``layout``: compact frame chunks (the header's :attr:`VideoHeader.layout`)."""
    if not 1 <= len(chunk.frames) <= MAX_GOP:
        raise ValueError(f"a GoP needs 1-{MAX_GOP} frames, got {len(chunk.frames)}")
    body = bytearray(varint(chunk.first_frame))
    body += struct.pack("<B", len(chunk.frames))
    body += pack_frames(chunk.frames) if layout is None else pack_compact_frames(chunk.frames, layout)
    if len(body) > MAX_GOP_BYTES:
        raise ValueError(f"a GoP chunk is larger than {MAX_GOP_BYTES} bytes")
    head = varint(len(body))
    return head + bytes(body) + _crc(head + bytes(body))


def pack_video(header: VideoHeader, gops: list[GopChunk]) -> bytes:
    """A whole file in memory (the tests use it; encoders stream with :class:`VideoFileWriter`)."""
    out = bytearray(pack_header(header))
    for g in gops:
        out += pack_gop(g, header.layout)
    return bytes(out)


# ---------------------------------------------------------------------------------------- reading
def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """``n`` bytes or :class:`BitstreamError`; read in pieces so that a corrupt length that claims more
    than the file holds does not allocate it."""
    parts, got = [], 0
    while got < n:
        b = f.read(min(READ_PIECE, n - got))
        if not b:
            raise BitstreamError(f"truncated bitstream ({what}: {got} of {n} bytes)")
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _read_varint_from(f: BinaryIO, what: str, limit: int) -> tuple[int, bytes]:
    raw = bytearray()
    for _ in range(6):
        b = f.read(1)
        if not b:
            raise BitstreamError(f"truncated bitstream ({what})")
        raw += b
        if not b[0] & 0x80:
            break
    else:
        raise BitstreamError(f"corrupt bitstream: varint too long ({what})")
    value, _ = read_varint(bytes(raw), 0, 6)
    if value > limit:
        raise BitstreamError(f"corrupt bitstream: {what} {value} out of range (at most {limit})")
    return value, bytes(raw)


def read_header(f: BinaryIO) -> VideoHeader:
    """Read and check the header at the start of ``f`` (leaves ``f`` at the first GoP chunk)."""
    magic = f.read(4)
    if len(magic) < 4:
        if not magic:
            raise BitstreamError("empty bitstream (0 bytes)")
        if magic != MAGIC[: len(magic)]:
            raise BitstreamError("not an rdopt video bitstream (bad magic)")
        raise BitstreamError(f"truncated bitstream ({len(magic)} bytes)")
    if magic != MAGIC:
        if magic == b"RDO1":
            raise BitstreamError("this is an rdopt image bitstream (.rdo), not a video bitstream")
        raise BitstreamError("not an rdopt video bitstream (bad magic)")
    fixed = _read_exact(f, 3, "header")
    version, flags, n = fixed
    if version != VERSION:
        raise BitstreamError(f"unsupported video bitstream format version {version} (this rdopt reads {VERSION})")
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"corrupt bitstream: unknown flags {flags:#x}")
    if n == 0:
        raise BitstreamError("corrupt bitstream: empty model id")
    # the rest of the header, field by field (varints byte by byte), then its CRC
    raw = bytearray(magic + fixed)
    raw += _read_exact(f, n + 8 + 2, "header")
    raw += _read_varint_from(f, "step count", MAX_STEPS)[1]
    raw += _read_exact(f, 4, "header")
    varints = []
    for what, limit in (("frame count", MAX_VIDEO_FRAMES), ("GoP size", MAX_GOP), ("frame rate", MAX_FPS_TERM),
                        ("frame rate", MAX_FPS_TERM)):
        v, b = _read_varint_from(f, what, limit)
        raw += b
        varints.append(v)
    raw += _read_exact(f, 1, "header")
    matrix_code = raw[-1]
    layout = _read_layout(f, raw) if flags & FLAG_COMPACT_FRAMES else None
    crc = _read_exact(f, 4, "header checksum")
    if _crc(bytes(raw)) != crc:
        raise BitstreamError("corrupt or truncated bitstream (header checksum mismatch)")
    b = Reader(bytes(raw), 7)
    try:
        model_id = b.take(n, "header").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("corrupt bitstream: model id is not ASCII") from None
    weight_hash = b.take(8, "header")
    method = name_of(METHOD_NAMES, b.byte("header"), "method")
    solver = name_of(SOLVER_NAMES, b.byte("header"), "solver")
    steps = b.varint(MAX_STEPS, "step count")
    height, width = struct.unpack("<HH", b.take(4, "header"))
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"corrupt bitstream: frame size {width}×{height} outside 1…{MAX_SIDE}")
    frames, gop, num, den = varints
    if frames < 1:
        raise BitstreamError("corrupt bitstream: 0 frames")
    if gop < 1:
        raise BitstreamError("corrupt bitstream: GoP size 0")
    if num < 1 or den < 1:
        raise BitstreamError(f"corrupt bitstream: frame rate {num}/{den}")
    matrix = name_of(MATRIX_NAMES, matrix_code, "colour matrix")
    if layout is not None:
        layout = _layout_of(layout)
    return VideoHeader(model_id=model_id, weight_hash=bytes(weight_hash), height=height, width=width, frames=frames,
                       gop=gop, fps=Fraction(num, den), matrix=matrix, full_range=bool(flags & FLAG_FULL_RANGE),
                       method=method, steps=steps, solver=solver, grayscale=bool(flags & FLAG_GRAYSCALE),
                       tight_padding=bool(flags & FLAG_TIGHT_PADDING), layout=layout)


def _read_layout(f: BinaryIO, raw: bytearray) -> tuple:
    """The header's stream layout table (appending its bytes to ``raw`` for the CRC); its codes and names are
    checked once the CRC has matched."""
    def byte(what: str) -> int:
        b = _read_exact(f, 1, what)
        raw.extend(b)
        return b[0]

    n = byte("stream layout")
    if not 1 <= n <= len(FRAME_TYPE_CODES):
        raise BitstreamError(f"corrupt bitstream: stream layout of {n} frame types")
    types = []
    for _ in range(n):
        code, k = byte("stream layout"), byte("stream layout")
        if not 1 <= k <= MAX_LAYOUT_STREAMS:
            raise BitstreamError(f"corrupt bitstream: stream layout of {k} streams for a frame type")
        entries = []
        for _ in range(k):
            kind, m = byte("stream layout"), byte("stream layout")
            if not 1 <= m <= MAX_BASE_NAME:
                raise BitstreamError(f"corrupt bitstream: stream layout name of {m} bytes")
            name = _read_exact(f, m, "stream layout")
            raw.extend(name)
            entries.append((kind, name))
        types.append((code, entries))
    return types


def _layout_of(raw_types: list) -> FrameLayout:
    """The :class:`FrameLayout` of a layout table as :func:`_read_layout` read it (codes and name bytes), checked."""
    types = []
    for code, entries in raw_types:
        named = []
        for kind, base in entries:
            try:
                base = base.decode("ascii")
            except UnicodeDecodeError:
                raise BitstreamError("corrupt bitstream: a stream layout name is not ASCII") from None
            named.append((name_of(LATENT_KIND_NAMES, kind, "latent kind"), base))
        types.append((name_of(FRAME_TYPE_NAMES, code, "frame type"), tuple(named)))
    try:
        return FrameLayout(tuple(types))
    except ValueError as e:
        raise BitstreamError(f"corrupt bitstream: stream layout: {e}") from None


def read_gop(f: BinaryIO, header: VideoHeader, index: int, remaining: int | None = None) -> GopChunk:
    """Read GoP chunk ``index`` at the position of ``f``: its length (checked against ``remaining``, the
    bytes left in the file when known), body and CRC, then its structure — no entropy decoding."""
    if remaining == 0:
        raise BitstreamError(f"truncated bitstream (the file ends after {index} of {header.num_gops} GoPs; "
                             f"the header says {header.frames} frames)")
    length, head = _read_varint_from(f, f"GoP {index} chunk length", MAX_GOP_BYTES)
    if length < 2:
        raise BitstreamError(f"corrupt bitstream: GoP chunk of {length} bytes")
    if remaining is not None and len(head) + length + 4 > remaining:
        raise BitstreamError(f"truncated bitstream (GoP {index} needs {len(head) + length + 4} bytes, "
                             f"{remaining} left)")
    body = _read_exact(f, length, f"GoP {index}")
    crc = _read_exact(f, 4, f"GoP {index} checksum")
    if _crc(head + body) != crc:
        raise BitstreamError(f"corrupt or truncated bitstream (GoP {index} checksum mismatch)")
    b = Reader(body, 0)
    first = b.varint(MAX_VIDEO_FRAMES, "first frame index")
    if first != index * header.gop:
        raise BitstreamError(f"corrupt bitstream: GoP {index} starts at frame {first}, expected {index * header.gop}")
    n = b.byte("GoP header")
    expected = header.gop_frames(index)
    if n != expected:
        raise BitstreamError(f"corrupt bitstream: GoP {index} has {n} frames, expected {expected}")
    if header.layout is None:
        frames = read_frames(b, n, where=f"GoP {index} ")
    else:
        frames = read_compact_frames(b, n, header.layout, where=f"GoP {index} ")
    return GopChunk(index, first, frames, len(head) + length + 4)


def _remaining(f: BinaryIO) -> int | None:
    try:
        if not f.seekable():
            return None
        pos = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(pos)
        return end - pos
    except (OSError, AttributeError, ValueError):
        return None


class VideoBitstreamReader:
    """Stream a ``.rdov`` file: ``header`` is read (and checked) on construction; :meth:`gops` yields the
    GoP chunks one at a time (each checked before it is yielded), then checks that the file ends there."""

    def __init__(self, source: bytes | str | os.PathLike | BinaryIO):
        self._owned = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._f: BinaryIO = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            self._f = self._owned = open(source, "rb")
        else:
            self._f = source
        try:
            self.header = read_header(self._f)
            self.header_bytes = self._pos()
        except BaseException:
            self.close()
            raise

    def _pos(self) -> int:
        try:
            return self._f.tell()
        except (OSError, AttributeError):
            return 0

    def gops(self) -> Iterator[GopChunk]:
        h = self.header
        for i in range(h.num_gops):
            yield read_gop(self._f, h, i, _remaining(self._f))
        if self._f.read(1):
            raise BitstreamError("corrupt bitstream: trailing bytes after the last GoP")

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> "VideoBitstreamReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unpack_video(data: bytes) -> tuple[VideoHeader, list[GopChunk]]:
    """Parse and check a whole file in memory."""
    r = VideoBitstreamReader(data)
    return r.header, list(r.gops())


def is_video_bitstream(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


# ---------------------------------------------------------------------------------------- the writer
class VideoFileWriter:
    """Write a ``.rdov`` file GoP by GoP: chunks go to an unnamed temporary file beside the output as they
    are finished; :meth:`close` writes the header (with the count of frames written) and the chunks to the
    output atomically (``-``: standard output). :meth:`abort` leaves nothing behind.

    ``header.frames`` is not used (any valid count, e.g. the number planned): the file written holds the
    count of the frames actually written (fewer if the encode stopped early, e.g. on Ctrl-C)."""

    def __init__(self, path: str | os.PathLike, header: VideoHeader):
        self.path = str(path)
        self.header = header
        pack_header(header)  # check it now
        self.frames = 0
        self.gops = 0
        self._short = False
        self.payload_bytes = 0
        parent = Path(tempfile.gettempdir()) if self.path == "-" else Path(self.path).absolute().parent
        # an unnamed file (unlinked at once, or never linked): nothing is left behind however the process ends
        self._f = tempfile.TemporaryFile("w+b", prefix=".rdopt-", suffix=".gops.tmp", dir=parent)

    def write_gop(self, frames: list[Frame]) -> int:
        """Append the next GoP (its frames' chunks; ``header.gop`` frames, fewer only for the last);
        returns the chunk's size in bytes."""
        if self._f is None:
            raise ValueError("writer is closed")
        if self._short:
            raise ValueError("a GoP shorter than the GoP size must be the last one")
        if not 1 <= len(frames) <= self.header.gop:
            raise ValueError(f"a GoP has 1-{self.header.gop} frames, got {len(frames)}")
        if self.frames + len(frames) > MAX_VIDEO_FRAMES:
            raise ValueError(f"a video bitstream holds at most {MAX_VIDEO_FRAMES} frames")
        data = pack_gop(GopChunk(self.gops, self.frames, tuple(frames)), self.header.layout)
        self._f.write(data)
        self._short = len(frames) < self.header.gop
        self.gops += 1
        self.frames += len(frames)
        self.payload_bytes += len(data)
        return len(data)

    def close(self, grayscale: bool | None = None) -> int:
        """Write the output (the finished GoPs); returns the file size. An error if no GoP was written.
        ``grayscale``: the header's grayscale flag, known once every frame written was seen (``None``: as
        given in ``header``)."""
        if self._f is None:
            raise ValueError("writer is closed")
        try:
            if self.frames == 0:
                raise ValueError("no GoP was written")
            from dataclasses import replace

            final = replace(self.header, frames=self.frames)
            if grayscale is not None:
                final = replace(final, grayscale=bool(grayscale))
            head = pack_header(final)
            self._f.flush()
            self._f.seek(0)
            from ..data.safeio import atomic_write_with

            def fill(out) -> None:
                out.write(head)
                shutil.copyfileobj(self._f, out)

            atomic_write_with(self.path, fill)
            return len(head) + self.payload_bytes
        finally:
            self.abort()

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


__all__ = ["MAGIC", "VERSION", "MAX_VIDEO_FRAMES", "MAX_GOP", "MATRIX_CODES", "FLAG_FULL_RANGE", "FLAG_GRAYSCALE",
           "FLAG_TIGHT_PADDING", "FLAG_COMPACT_FRAMES", "FrameLayout", "VideoHeader", "GopChunk", "pack_header",
           "pack_gop", "pack_compact_frames", "read_compact_frames", "pack_video", "read_header", "read_gop",
           "VideoBitstreamReader", "unpack_video", "is_video_bitstream", "VideoFileWriter"]
