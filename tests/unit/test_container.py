import random
import struct
import zlib

import pytest

from rdopt.coding.codes import FRAME_TYPE_CODES, LATENT_KIND_CODES, METHOD_CODES, SOLVER_CODES
from rdopt.coding.container import (MAX_STRING_BYTES, BitstreamError, Frame, Header, RdoFile, Stream, read_varint,
                                    varint, pack, pack_v1, unpack)


def sample_header():
    return Header("rdopt-msh-q3", bytes(range(8)), height=300, width=451, grayscale=True, method="sga", steps=2000)


def sample_file():
    return RdoFile(sample_header(), [Frame("I", [Stream("y", "latent", b"\x01\x02\x03" * 100), Stream("z", "hyper", b"zz")])])


def sample_video():
    h = Header("toy-video", bytes(8), height=16, width=24, method="sga", steps=300, solver="windowed")
    return RdoFile(h, [
        Frame("I", [Stream("y0", "latent", b"a" * 7), Stream("z0", "hyper", b"b")]),
        Frame("P", [Stream("w1", "motion", b"c" * 3), Stream("r1", "residual", b"d" * 200)], side_info_bits=12345),
    ])


def v1_strings():
    return [b"\x01\x02\x03" * 100, b"zz"]


def reseal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


# ------------------------------------------------------------------------------------------ code tables
def test_code_tables_are_fixed():
    # these numbers are the format: changing one changes what existing files mean
    assert dict(METHOD_CODES) == {"amortized": 0, "sga": 1, "noise": 2, "ste": 3, "map": 4, "danneal": 5,
                                  "bao": 6, "sequential": 7, "windowed": 8, "exact": 9, "oeu": 10,
                                  "oeu-sequential": 11, "lambda-domain": 12, "sga-bb": 13}
    assert dict(SOLVER_CODES) == {"joint": 0, "sequential": 1, "windowed": 2, "exact": 3}
    assert dict(FRAME_TYPE_CODES) == {"I": 0, "P": 1, "B": 2}
    assert dict(LATENT_KIND_CODES) == {"latent": 0, "hyper": 1, "motion": 2, "motion-hyper": 3, "residual": 4,
                                       "residual-hyper": 5, "bits-back": 6, "skip": 7}


# ------------------------------------------------------------------------------------------ v2
@pytest.mark.parametrize("make", [sample_file, sample_video])
def test_v2_round_trip(make):
    f = make()
    data = pack(f)
    g = unpack(data)
    assert g == f and g.version == 2
    assert data[4] == 2


def test_v2_header_is_compact():
    f = sample_file()
    assert len(pack(f)) - f.payload_bytes <= 55  # ~10 bytes more than v1 for the named streams and frame chunk


def test_v2_rejects_what_it_cannot_write():
    h = sample_header()
    with pytest.raises(ValueError, match="unknown method"):
        pack(RdoFile(Header("m", bytes(8), 1, 1, method="adagrad"), sample_file().frames))
    with pytest.raises(ValueError, match="latent kind"):
        pack(RdoFile(h, [Frame("I", [Stream("y", "colour", b"")])]))
    with pytest.raises(ValueError, match="frame type"):
        pack(RdoFile(h, [Frame("Q", [Stream("y", "latent", b"")])]))
    with pytest.raises(ValueError, match="duplicate"):
        pack(RdoFile(h, [Frame("I", [Stream("y", "latent", b""), Stream("y", "hyper", b"")])]))
    with pytest.raises(ValueError, match="frames"):
        pack(RdoFile(h, []))


@pytest.mark.parametrize("make", [sample_file, sample_video])
def test_every_truncation_is_an_error(make):
    data = pack(make())
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:cut])


def _assert_every_bit_flip_is_detected(data: bytes) -> None:
    """One random bit flipped at every byte position in turn: each corrupted file is a BitstreamError."""
    rng = random.Random(0)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(BitstreamError):
            unpack(bytes(bad))


@pytest.mark.parametrize("make", [sample_file, sample_video])
def test_every_single_byte_corruption_is_detected(make):
    _assert_every_bit_flip_is_detected(pack(make()))


def _v2_offsets():
    """Positions in the body of sample_file(): method, solver, steps varint (2 bytes), size, frames."""
    base = 4 + 3 + 12 + 8
    return {"method": base, "solver": base + 1, "height": base + 4, "frames": base + 8, "ftype": base + 9,
            "side": base + 10, "k": base + 11, "kind": base + 12, "namelen": base + 13, "len0": base + 15}


def test_v2_unknown_codes_and_oversized_lengths_are_clean_errors_even_with_a_valid_checksum():
    body = bytes(pack(sample_file())[:-4])
    o = _v2_offsets()
    assert body[o["namelen"] + 1 : o["namelen"] + 2] == b"y"

    def poke(pos: int, value: bytes) -> bytes:
        b = bytearray(body)
        b[pos : pos + len(value)] = value
        return reseal(bytes(b))

    for field, match in (("method", "method code"), ("solver", "solver code"), ("ftype", "frame type code"),
                         ("kind", "latent kind code")):
        with pytest.raises(BitstreamError, match=match):
            unpack(poke(o[field], b"\xee"))
    with pytest.raises(BitstreamError, match="image size"):
        unpack(poke(o["height"], struct.pack("<H", 40000)))
    with pytest.raises(BitstreamError, match="frames"):
        unpack(poke(o["frames"], b"\x00"))
    with pytest.raises(BitstreamError, match="streams"):
        unpack(poke(o["k"], b"\x00"))
    with pytest.raises(BitstreamError, match="name"):
        unpack(poke(o["namelen"], b"\x00"))
    # a stream length above the hard limit, and one claiming more bytes than the file has
    huge = bytearray(body)
    huge[o["len0"] : o["len0"] + 2] = b""
    huge[o["len0"] : o["len0"]] = varint(MAX_STRING_BYTES + 1)
    with pytest.raises(BitstreamError, match="out of range"):
        unpack(reseal(bytes(huge)))
    with pytest.raises(BitstreamError, match="need"):
        unpack(poke(o["len0"], b"\xff\x01"))
    # a varint that never ends
    with pytest.raises(BitstreamError, match="varint"):
        unpack(poke(o["side"], b"\xff" * 8))
    # an unsupported version
    with pytest.raises(BitstreamError, match="version"):
        unpack(poke(4, b"\x09"))


def test_trailing_garbage_and_wrong_magic():
    data = pack(sample_file())
    with pytest.raises(BitstreamError):
        unpack(data + b"\x00")
    with pytest.raises(BitstreamError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(BitstreamError, match="empty"):
        unpack(b"")


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**21, 2**30])
def test_varint(n):
    enc = varint(n)
    assert read_varint(enc, 0) == (n, len(enc))


# ------------------------------------------------------------------------------------------ v1 (read only)
def test_v1_round_trip_and_compact_header():
    data = pack_v1(sample_header(), v1_strings())
    f = unpack(data)
    assert f.version == 1 and f.header == sample_header() and f.strings == v1_strings()
    assert data[4] == 1
    assert len(data) - f.payload_bytes <= 45  # the v1 container costs ~40 bytes


def test_v1_every_truncation_and_corruption_is_an_error():
    data = pack_v1(sample_header(), v1_strings())
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:cut])
    _assert_every_bit_flip_is_detected(data)


def test_v1_sizes_are_checked_even_with_a_valid_checksum():
    body = bytearray(pack_v1(sample_header(), v1_strings())[:-4])
    # image height field sits after magic(4)+3+id(12)+hash(8)+method(1)+steps(2)
    pos = 4 + 3 + 12 + 8 + 1 + 2
    huge = bytearray(body)
    huge[pos : pos + 2] = struct.pack("<H", 40000)
    with pytest.raises(BitstreamError, match="image size"):
        unpack(reseal(bytes(huge)))
    zero = bytearray(body)
    zero[pos : pos + 2] = b"\x00\x00"
    with pytest.raises(BitstreamError, match="image size"):
        unpack(reseal(bytes(zero)))
    # a string length that claims more bytes than the file has
    lens = bytearray(body)
    lens[pos + 5] = 0xFF  # first varint byte of the first length
    with pytest.raises(BitstreamError):
        unpack(reseal(bytes(lens)))
    # an unknown method code
    meth = bytearray(body)
    meth[pos - 3] = 17
    with pytest.raises(BitstreamError, match="method code"):
        unpack(reseal(bytes(meth)))
