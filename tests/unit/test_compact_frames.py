"""Compact frame chunks of the ``.rdov`` container (header flag bit 3): the stream layout stated once in the header,
each frame chunk only its type, presence mask and lengths. Round trip, size, and that every truncation, bit flip,
bad mask or bad layout is a one-line BitstreamError (no torch needed)."""

import random
import struct
import zlib
from dataclasses import replace
from fractions import Fraction

import pytest

from rdopt.coding.container import BitstreamError, Frame, Reader, Stream, varint
from rdopt.coding.rdov import (FLAG_COMPACT_FRAMES, FrameLayout, GopChunk, VideoBitstreamReader, VideoFileWriter,
                               VideoHeader, pack_compact_frames, pack_gop, pack_header, pack_video,
                               read_compact_frames, unpack_video)

LAYOUT = FrameLayout((("I", (("latent", "y"), ("hyper", "z"))),
                      ("P", (("motion", "w"), ("motion-hyper", "z_w"), ("residual", "y"), ("residual-hyper", "z_y"),
                             ("skip", "skip")))))


def header(**kw):
    d = dict(model_id="rdopt-video2-q2", weight_hash=bytes(range(8)), height=60, width=90, frames=5, gop=3,
             fps=Fraction(30000, 1001), matrix="709", layout=LAYOUT)
    d.update(kw)
    return VideoHeader(**d)


def i_frame(tag=b"i"):
    return Frame("I", [Stream("y_0", "latent", tag * 40), Stream("z_0", "hyper", b"z" * 3)])


def p_frame(t, n=5, skip=None):
    streams = [Stream(f"w_{t}", "motion", b"w" * n), Stream(f"z_w_{t}", "motion-hyper", b"a")]
    if skip != "frame":  # a frame skipped whole has no residual streams
        streams += [Stream(f"y_{t}", "residual", b"r" * (n + 300)), Stream(f"z_y_{t}", "residual-hyper", b"b")]
    if skip is not None:
        streams.append(Stream(f"skip_{t}", "skip", b"\x01" if skip == "frame" else b"\x02\x80\x01\x01\0\0\0\0"))
    return Frame("P", streams)


def sample():
    gops = [GopChunk(0, 0, [i_frame(), p_frame(1), p_frame(2, 9, skip="frame")]),
            GopChunk(1, 3, [i_frame(b"j"), p_frame(1, 2, skip="blocks")])]
    return header(), gops


def read_all(data: bytes):
    r = VideoBitstreamReader(data)
    return r.header, list(r.gops())


def test_round_trip_keeps_every_stream_and_is_smaller_than_named_chunks():
    h, gops = sample()
    data = pack_video(h, gops)
    assert data[5] & FLAG_COMPACT_FRAMES
    h2, gops2 = unpack_video(data)
    assert h2 == h and h2.layout == LAYOUT
    assert [g.frames for g in gops2] == [g.frames for g in gops]  # names, kinds, payloads, side-info 0
    assert sum(g.chunk_bytes for g in gops2) + len(pack_header(h)) == len(data)
    named = pack_video(replace(h, layout=None), gops)
    assert not named[5] & FLAG_COMPACT_FRAMES and unpack_video(named)[1][0].frames == gops[0].frames
    # each P-frame chunk: type + mask + one length byte per stream, where the named form spends kind, name length,
    # name and length per stream (and side-information bits and a count per frame)
    saved = len(named) - len(data)
    header_growth = len(pack_header(h)) - len(pack_header(replace(h, layout=None)))
    assert saved + header_growth >= 25 * 3


def test_the_writer_streams_compact_chunks(tmp_path):
    h, gops = sample()
    w = VideoFileWriter(tmp_path / "a.rdov", h)
    sizes = [w.write_gop(list(g.frames)) for g in gops]
    w.close()
    data = (tmp_path / "a.rdov").read_bytes()
    assert data == pack_video(h, gops)
    assert sizes == [len(pack_gop(g, LAYOUT)) for g in gops] == [g.chunk_bytes for g in read_all(data)[1]]


def test_every_truncation_and_bit_flip_is_an_error():
    data = pack_video(*sample())
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            read_all(data[:cut])
    rng = random.Random(1)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(BitstreamError):
            read_all(bytes(bad))


def test_the_layout_flag_is_covered_by_the_header_checksum():
    h, gops = sample()
    plain = pack_video(replace(h, layout=None), gops)
    bad = bytearray(plain)
    bad[5] |= FLAG_COMPACT_FRAMES
    with pytest.raises(BitstreamError):
        read_all(bytes(bad))


def _reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def test_a_bad_layout_is_refused_even_with_a_valid_checksum():
    h, gops = sample()
    plain = pack_header(replace(h, layout=None))[:-4]
    chunks = b"".join(pack_gop(g, LAYOUT) for g in gops)

    def with_table(table: bytes) -> bytes:
        b = bytearray(plain)
        b[5] |= FLAG_COMPACT_FRAMES
        return _reseal(bytes(b) + table) + chunks

    good = pack_header(h)[len(plain):-4]
    assert read_all(with_table(good))[0].layout == LAYOUT
    with pytest.raises(BitstreamError, match="layout of 0 frame types"):
        read_all(with_table(b"\x00"))
    with pytest.raises(BitstreamError, match="layout of 9 streams"):
        read_all(with_table(b"\x01\x00\x09"))
    with pytest.raises(BitstreamError, match="unknown frame type"):
        read_all(with_table(b"\x01\x09\x01\x00\x01y"))
    with pytest.raises(BitstreamError, match="unknown latent kind"):
        read_all(with_table(b"\x01\x00\x01\x42\x01y"))
    with pytest.raises(BitstreamError, match="name of 0 bytes"):
        read_all(with_table(b"\x01\x00\x01\x00\x00"))
    with pytest.raises(BitstreamError, match="not ASCII"):
        read_all(with_table(b"\x01\x00\x01\x00\x01\xff"))
    with pytest.raises(BitstreamError, match="distinct"):  # the same frame type twice
        read_all(with_table(b"\x02\x00\x01\x00\x01y\x00\x01\x00\x01y"))
    with pytest.raises(BitstreamError, match="distinct"):  # the same stream twice in a type
        read_all(with_table(b"\x01\x00\x02\x00\x01y\x00\x01y"))
    with pytest.raises(BitstreamError, match="distinct"):  # one name under two kinds: two streams w_t in a frame
        read_all(with_table(b"\x01\x01\x02\x02\x01w\x04\x01w"))
    with pytest.raises(BitstreamError, match="truncated"):
        read_all(with_table(b"\x01\x00\x02\x00\x01y"))


def test_a_bad_frame_chunk_is_refused_even_with_a_valid_checksum():
    h, gops = sample()
    body = pack_compact_frames(gops[0].frames, LAYOUT)
    assert body[:2] == b"\x00\x03"  # I-frame, streams 0 and 1

    def frames_of(b: bytes):
        return read_compact_frames(Reader(b, 0), 3, LAYOUT, where="GoP 0 ")

    assert frames_of(body) == tuple(gops[0].frames)
    with pytest.raises(BitstreamError, match="mask 0x00"):
        frames_of(b"\x00\x00" + body[2:])
    with pytest.raises(BitstreamError, match="mask 0x07 .its layout has 2"):  # the I-frame layout has two streams
        frames_of(b"\x00\x07" + body[2:])
    with pytest.raises(BitstreamError, match="unknown frame type"):
        frames_of(b"\x09" + body[1:])
    only_i = FrameLayout((("I", LAYOUT.of("I")),))
    with pytest.raises(BitstreamError, match="does not list"):
        read_compact_frames(Reader(body, 0), 3, only_i)
    with pytest.raises(BitstreamError, match="GoP 0 streams need"):
        frames_of(body + b"\0")
    with pytest.raises(BitstreamError, match="GoP 0 streams need"):
        frames_of(body[:-1])
    # a lying length is checked against the body before any payload is sliced
    with pytest.raises(BitstreamError, match="streams need"):
        frames_of(body[:2] + varint(1 << 29) + body[3:])


def test_frames_that_do_not_fit_the_layout_are_not_written():
    with pytest.raises(ValueError, match="does not fit"):  # out of layout order
        pack_compact_frames([Frame("P", [Stream("y_1", "residual", b"r"), Stream("w_1", "motion", b"w")])], LAYOUT)
    with pytest.raises(ValueError, match="does not fit"):  # a name without the frame's index
        pack_compact_frames([Frame("I", [Stream("y", "latent", b"r")])], LAYOUT)
    with pytest.raises(ValueError, match="does not fit"):  # the right name, another kind
        pack_compact_frames([Frame("I", [Stream("y_0", "residual", b"r")])], LAYOUT)
    with pytest.raises(ValueError, match="side-information"):
        pack_compact_frames([Frame("I", [Stream("y_0", "latent", b"r")], side_info_bits=8)], LAYOUT)
    with pytest.raises(ValueError, match="not in the compact layout"):
        pack_compact_frames([Frame("B", [Stream("y_0", "latent", b"r")])], LAYOUT)
    with pytest.raises(ValueError, match="distinct frame types"):
        FrameLayout((("I", (("latent", "y"),)), ("I", (("latent", "y"),))))
    with pytest.raises(ValueError, match="1-8 streams of distinct base names"):
        FrameLayout((("P", tuple(("motion", f"w{i}") for i in range(9))),))
    with pytest.raises(ValueError, match="ASCII"):
        FrameLayout((("P", (("motion", "x" * 29),)),))
    with pytest.raises(ValueError, match="latent kind"):
        FrameLayout((("P", (("colour", "w"),)),))
