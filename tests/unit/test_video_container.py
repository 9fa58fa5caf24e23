"""The ``.rdov`` video container: round trip, streaming, and that every truncation, bit flip, unknown code
or dishonest size is a one-line BitstreamError (no torch needed)."""

import io
import random
import struct
import zlib
from fractions import Fraction

import pytest

from rdopt.coding.container import BitstreamError, Frame, Stream, varint, pack
from rdopt.coding.rdov import (MAGIC, MAX_GOP, MAX_VIDEO_FRAMES, GopChunk, VideoBitstreamReader,
                                          VideoFileWriter, VideoHeader, pack_gop, pack_header, pack_video,
                                          unpack_video)


def header(frames=5, gop=3, **kw):
    d = dict(model_id="rdopt-video-q3", weight_hash=bytes(range(8)), height=60, width=90, frames=frames, gop=gop,
             fps=Fraction(30000, 1001), matrix="709", full_range=True, method="amortized", steps=0, solver="joint")
    d.update(kw)
    return VideoHeader(**d)


def i_frame(tag=b"i"):
    return Frame("I", [Stream("y_0", "latent", tag * 40), Stream("z_0", "hyper", b"z" * 3)])


def p_frame(t, n=5):
    return Frame("P", [Stream(f"w_{t}", "motion", b"w" * n), Stream(f"z_w_{t}", "motion-hyper", b"a"),
                       Stream(f"y_{t}", "residual", b"r" * (n + 3)), Stream(f"z_y_{t}", "residual-hyper", b"b")],
                 side_info_bits=7 * t)


def sample():
    """5 frames, GoP 3: GoPs of 3 and 2 frames."""
    h = header()
    gops = [GopChunk(0, 0, [i_frame(), p_frame(1), p_frame(2, 9)]), GopChunk(1, 3, [i_frame(b"j"), p_frame(1, 2)])]
    return h, gops


def sample_bytes():
    return pack_video(*sample())


def read_all(data: bytes):
    r = VideoBitstreamReader(data)
    return r.header, list(r.gops())


def test_round_trip_and_streaming():
    h, gops = sample()
    data = pack_video(h, gops)
    assert data[:4] == MAGIC == b"RDOV"
    h2, gops2 = unpack_video(data)
    assert h2 == h and h2.fps == Fraction(30000, 1001) and h2.num_gops == 2
    assert [g.frames for g in gops2] == [g.frames for g in gops]
    assert [g.first_frame for g in gops2] == [0, 3]
    assert sum(g.chunk_bytes for g in gops2) + len(pack_header(h)) == len(data)
    # from a non-seekable stream too (sizes are then bounded by what is read, piece by piece)
    class Pipe(io.RawIOBase):
        def __init__(self, b):
            self.b = io.BytesIO(b)

        def readable(self):
            return True

        def readinto(self, buf):
            chunk = self.b.read(min(len(buf), 7))
            buf[: len(chunk)] = chunk
            return len(chunk)

    r = VideoBitstreamReader(io.BufferedReader(Pipe(data)))
    assert r.header == h and [g.frames for g in r.gops()] == [g.frames for g in gops]


def test_image_and_video_forms_are_told_apart():
    from rdopt.coding.container import Header, RdoFile, unpack

    img = pack(RdoFile(Header("rdopt-msh-q3", bytes(8), 10, 10), [i_frame()]))
    with pytest.raises(BitstreamError, match="image bitstream"):
        read_all(img)
    with pytest.raises(BitstreamError, match="bad magic"):
        unpack(sample_bytes())


def test_every_truncation_is_an_error():
    data = sample_bytes()
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            read_all(data[:cut])


def test_truncation_at_a_gop_boundary_names_the_missing_gops():
    h, gops = sample()
    data = pack_header(h) + pack_gop(gops[0])
    with pytest.raises(BitstreamError, match="ends after 1 of 2 GoPs"):
        read_all(data)


def test_every_bit_flip_is_detected():
    data = sample_bytes()
    rng = random.Random(0)
    for pos in range(len(data)):
        for _ in range(2):
            bad = bytearray(data)
            bad[pos] ^= 1 << rng.randrange(8)
            with pytest.raises(BitstreamError):
                read_all(bytes(bad))


def test_trailing_bytes_and_reordered_gops():
    h, gops = sample()
    with pytest.raises(BitstreamError, match="trailing"):
        read_all(pack_video(h, gops) + b"\0")
    # chunks are individually valid but out of order: each names its first frame
    swapped = pack_header(h) + pack_gop(gops[1]) + pack_gop(gops[0])
    with pytest.raises(BitstreamError, match="starts at frame 3, expected 0"):
        read_all(swapped)
    # a GoP with fewer frames than the header implies
    with pytest.raises(BitstreamError, match="has 2 frames, expected 3"):
        read_all(pack_header(h) + pack_gop(GopChunk(0, 0, gops[1].frames)) + pack_gop(gops[1]))


def _reseal_header(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _chunk(body: bytes) -> bytes:
    head = varint(len(body))
    return head + body + struct.pack("<I", zlib.crc32(head + body) & 0xFFFFFFFF)


def test_unknown_codes_and_bad_sizes_are_errors_even_with_valid_checksums():
    h, gops = sample()
    hb = pack_header(h)[:-4]
    mid = len("rdopt-video-q3")
    base = 7 + mid + 8

    def poke(pos, value):
        b = bytearray(hb)
        b[pos : pos + len(value)] = value
        return _reseal_header(bytes(b)) + b"".join(pack_gop(g) for g in gops)

    with pytest.raises(BitstreamError, match="unknown method code 99"):
        read_all(poke(base, b"\x63"))
    with pytest.raises(BitstreamError, match="unknown solver code"):
        read_all(poke(base + 1, b"\x63"))
    with pytest.raises(BitstreamError, match="unknown flags"):
        read_all(poke(5, b"\x12"))
    with pytest.raises(BitstreamError, match="version"):
        read_all(poke(4, b"\x09"))
    with pytest.raises(BitstreamError, match="frame size"):
        read_all(poke(base + 3, struct.pack("<H", 0)))
    with pytest.raises(BitstreamError, match="colour matrix"):
        read_all(poke(len(hb) - 1, b"\x07"))
    # frame count / GoP size out of range (the frames, GoP and frame-rate varints precede the matrix byte)
    fields = hb[base + 7 :]
    assert fields[:1] == b"\x05"

    def header_with(frames, gop, num=30000, den=1001):
        b = hb[: base + 7] + varint(frames) + varint(gop) + varint(num) + varint(den) + hb[-1:]
        return _reseal_header(b)

    with pytest.raises(BitstreamError, match="frame count"):
        read_all(header_with(MAX_VIDEO_FRAMES + 1, 3))
    with pytest.raises(BitstreamError, match="GoP size"):
        read_all(header_with(5, MAX_GOP + 1))
    with pytest.raises(BitstreamError, match="0 frames"):
        read_all(header_with(0, 3))
    with pytest.raises(BitstreamError, match="frame rate"):
        read_all(header_with(5, 3, den=0))
    good_header = pack_header(h)
    # a GoP chunk that claims more bytes than the file holds is refused before reading it
    with pytest.raises(BitstreamError, match="truncated"):
        read_all(good_header + varint(1 << 29) + b"\0" * 10)
    with pytest.raises(BitstreamError, match="out of range"):
        read_all(good_header + varint((1 << 30) + 1) + b"\0" * 10)
    # inside a chunk (valid CRC): unknown frame type, latent kind, bad stream counts and lengths
    body = pack_gop(gops[0])
    n = len(varint(len(body) - 6))  # a two-byte length varint
    assert n == 2
    inner = bytearray(body[n:-4])
    assert inner[0] == 0 and inner[1] == 3 and inner[2] == 0  # first frame 0, 3 frames, type I

    def chunk_with(pos, value):
        b = bytearray(inner)
        b[pos : pos + len(value)] = value
        return good_header + _chunk(bytes(b)) + pack_gop(gops[1])

    with pytest.raises(BitstreamError, match="unknown frame type"):
        read_all(chunk_with(2, b"\x09"))
    with pytest.raises(BitstreamError, match="streams in a frame"):
        read_all(chunk_with(4, b"\x00"))
    with pytest.raises(BitstreamError, match="unknown latent kind"):
        read_all(chunk_with(5, b"\x42"))
    with pytest.raises(BitstreamError, match="stream name of 0 bytes"):
        read_all(chunk_with(6, b"\x00"))
    with pytest.raises(BitstreamError, match="not ASCII"):
        read_all(chunk_with(7, b"\xff"))
    with pytest.raises(BitstreamError, match="streams need"):
        read_all(chunk_with(10, b"\x7f"))  # y_0's payload length
    with pytest.raises(BitstreamError, match="twice"):
        read_all(chunk_with(inner.index(b"z_0"), b"y_0"))


def test_pack_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="frames"):
        pack_header(header(frames=0))
    with pytest.raises(ValueError, match="GoP size"):
        pack_header(header(gop=MAX_GOP + 1))
    with pytest.raises(ValueError, match="colour matrix"):
        pack_header(header(matrix="2020"))
    with pytest.raises(ValueError, match="frame rate"):
        pack_header(header(fps=0))
    with pytest.raises(ValueError, match="latent kind"):
        pack_gop(GopChunk(0, 0, [Frame("I", [Stream("y_0", "colour", b"")])]))


def test_writer_keeps_finished_gops_and_leaves_nothing_on_abort(tmp_path):
    h, gops = sample()
    out = tmp_path / "c.rdov"
    w = VideoFileWriter(out, header(frames=1))  # the planned count is not used
    w.write_gop(list(gops[0].frames))
    assert not out.exists()
    size = w.close()  # e.g. interrupted after the first GoP: a valid file of 3 frames
    h2, g2 = read_all(out.read_bytes())
    assert size == out.stat().st_size and h2.frames == 3 and len(g2) == 1
    w = VideoFileWriter(out, h)
    for g in gops:
        w.write_gop(list(g.frames))
    w.close()
    assert out.read_bytes() == pack_video(h, gops)
    w = VideoFileWriter(tmp_path / "d.rdov", h)
    w.write_gop(list(gops[1].frames))  # a short GoP must be the last
    with pytest.raises(ValueError, match="last"):
        w.write_gop(list(gops[0].frames))
    w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.rdov"]
