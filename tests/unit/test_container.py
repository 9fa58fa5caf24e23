import random

import pytest

from rdopt.coding.container import BitstreamError, Header, RdoFile, _read_varint, _varint, pack, unpack


def sample_file():
    h = Header("rdopt-msh-q3", bytes(range(8)), height=300, width=451, grayscale=True, method="sga", steps=2000)
    return RdoFile(h, [b"\x01\x02\x03" * 100, b"zz"])


def test_round_trip_and_compact_header():
    f = sample_file()
    data = pack(f)
    assert unpack(data) == f
    assert len(data) - f.payload_bytes <= 45  # the container costs ~40 bytes


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**21, 2**30])
def test_varint(n):
    enc = _varint(n)
    assert _read_varint(enc, 0) == (n, len(enc))


def test_every_truncation_is_an_error():
    data = pack(sample_file())
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:cut])


def test_every_single_byte_corruption_is_detected():
    data = bytearray(pack(sample_file()))
    rng = random.Random(0)
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(BitstreamError):
            unpack(bytes(bad))


def test_trailing_garbage_and_wrong_magic():
    data = pack(sample_file())
    with pytest.raises(BitstreamError):
        unpack(data + b"\x00")
    with pytest.raises(BitstreamError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(BitstreamError, match="empty"):
        unpack(b"")


def test_sizes_are_checked_even_with_a_valid_checksum():
    import struct
    import zlib

    def reseal(body: bytes) -> bytes:
        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)

    body = bytearray(pack(sample_file())[:-4])
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
    # an unsupported version
    ver = bytearray(body)
    ver[4] = 9
    with pytest.raises(BitstreamError, match="version"):
        unpack(reseal(bytes(ver)))
