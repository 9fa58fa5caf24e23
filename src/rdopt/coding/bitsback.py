"""Entropy coding of lossy bits-back (paper 003, Alg. 1 lines 4–5 and 6, 8) with constriction's ANS stack
coder. numpy and constriction only (no torch): the model's parameters arrive as float64 arrays.

Streams of an ``sga-bb`` frame (container v2, named streams):

* ``y`` (kind ``latent``) — ŷ ∈ ℤ with P(ŷ | ẑ) = ``QuantizedGaussian(−Y_RANGE, Y_RANGE)`` at the given
  means and scales, in C-order of ŷ (an ANS stack of its own).
* ``z`` (kind ``hyper``) — the bits-back stack: it *starts* as the side information ξ (whitened: XOR with a
  keystream seeded by the ŷ hash; plus padding, below); the encoder **decodes** ẑ from it with
  Q(ẑ | μz, σz²) (a ``QuantizedGaussian`` in grid units on a local support, :func:`q_support`),
  then **encodes** ẑ with P(ẑ) (one ``Categorical`` per channel over the 2K+1 grid points, channels in
  order, each channel's elements in C-order). The decoder decodes ẑ with P, and after
  ``reproducible_bbvi(ŷ)`` re-encodes ẑ with Q: the stack is then ξ again.
* ``bb`` (kind ``bits-back``) — what the decoder needs to take the bits back (:class:`BBRecord`): the grid,
  the BBVI settings, the number of padding words under ξ and an 8-byte SHA-256 of ξ.

Words ↔ bytes: constriction's stacks are arrays of uint32 words (the top of the stack is the end of the
array); they are stored little-endian. ξ (any number of bytes; its bit count is the frame's
side-information field) is zero-padded to whole words. If ξ holds fewer bits than decoding ẑ consumes, the
encoder puts ``pad_words`` pseudo-random words *under* ξ (drawn from a generator seeded by the ŷ hash);
decoding takes ξ's bits first, then the padding. Padding comes back out at the decoder and is dropped; its
bits are counted in the file but not as recovered bits (net rate = file bits − bits of ξ). Excess ξ (more
bits than ẑ consumes) stays in the ``z`` stream and comes back with the rest.

Parameters handed to the coder are snapped to a dyadic grid (:func:`snap`: multiples of 2⁻²⁰) so that a
difference in the last bits of a float between encoder and decoder rarely changes the coder's tables;
the checksum of ξ makes any remaining disagreement a loud error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .bbrecord import BBRecord
from .container import BitstreamError

SNAP = 2.0 ** -20
MIN_Q_STD = 2.0 ** -6  # grid units: a narrower q puts all mass on one grid point anyway
MAX_Q_STD = 2.0 ** 12
WHITEN_SALT = 0x5748_4954_454E  # "WHITEN"
MIN_WORDS_LEFT = 2  # never let decoding ẑ run the stack below its 64-bit head (it would read zeros)


class SideInfoError(BitstreamError):
    """The side information could not be recovered exactly (checksum mismatch)."""


def _model():
    import constriction

    return constriction.stream.model, constriction.stream.stack


def snap(a: np.ndarray) -> np.ndarray:
    """Round to a multiple of 2⁻²⁰ (float64)."""
    return np.round(np.asarray(a, dtype=np.float64) / SNAP) * SNAP


# ------------------------------------------------------------------------------------------ bytes/words
def words_to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def bytes_to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise BitstreamError(f"corrupt bitstream: an ANS stream of {len(data)} bytes (not whole 32-bit words)")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def side_info_words(xi: bytes) -> np.ndarray:
    """ξ zero-padded to whole little-endian words."""
    pad = (-len(xi)) % 4
    return bytes_to_words(bytes(xi) + b"\0" * pad)


def checksum(xi: bytes) -> bytes:
    return hashlib.sha256(bytes(xi)).digest()[:8]


# ------------------------------------------------------------------------------------------ y
def encode_y(y_sym: np.ndarray, means: np.ndarray, scales: np.ndarray, y_range: int = 4096) -> bytes:
    """ŷ (integers) with P(ŷ | ẑ) as one ANS stack."""
    model, stack = _model()
    y = np.asarray(y_sym).reshape(-1)
    if y.size and (y.min() < -y_range or y.max() > y_range):
        raise ValueError(f"latent values outside ±{y_range} cannot be coded")
    coder = stack.AnsCoder()
    coder.encode_reverse(y.astype(np.int32), model.QuantizedGaussian(-y_range, y_range),
                         snap(means).reshape(-1), snap(scales).reshape(-1))
    return words_to_bytes(coder.get_compressed())


def decode_y(data: bytes, means: np.ndarray, scales: np.ndarray, y_range: int = 4096) -> np.ndarray:
    model, stack = _model()
    coder = stack.AnsCoder(bytes_to_words(data)) if data else stack.AnsCoder()
    y = coder.decode(model.QuantizedGaussian(-y_range, y_range), snap(means).reshape(-1), snap(scales).reshape(-1))
    if not coder.is_empty():
        raise BitstreamError("corrupt bitstream: the y stream holds more data than its latents")
    return y.astype(np.int64).reshape(np.shape(means))


# ------------------------------------------------------------------------------------------ z with P
def _channel_models(table: np.ndarray):
    model, _ = _model()
    return [model.Categorical(np.ascontiguousarray(row), perfect=False) for row in table]


def _encode_z_prior(coder, z_sym: np.ndarray, table: np.ndarray) -> None:
    """Push ẑ (B=1, C, h, w; symbols in −K…K) with P: channel C−1 first so channel 0 comes off first."""
    k = (table.shape[1] - 1) // 2
    models = _channel_models(table)
    z = np.asarray(z_sym).reshape(table.shape[0], -1)
    for c in reversed(range(table.shape[0])):
        coder.encode_reverse((z[c] + k).astype(np.int32), models[c])


def _decode_z_prior(coder, shape: tuple[int, ...], table: np.ndarray) -> np.ndarray:
    k = (table.shape[1] - 1) // 2
    models = _channel_models(table)
    n = int(np.prod(shape[2:]))
    rows = [coder.decode(models[c], n).astype(np.int64) - k for c in range(table.shape[0])]
    return np.stack(rows).reshape(shape)


def plain_encode_z(z_sym: np.ndarray, table: np.ndarray) -> bytes:
    """ẑ with P(ẑ) alone (no bits-back)."""
    _, stack = _model()
    coder = stack.AnsCoder()
    _encode_z_prior(coder, z_sym, table)
    return words_to_bytes(coder.get_compressed())


def plain_decode_z(data: bytes, shape: tuple[int, ...], table: np.ndarray) -> np.ndarray:
    _, stack = _model()
    coder = stack.AnsCoder(bytes_to_words(data)) if data else stack.AnsCoder()
    z = _decode_z_prior(coder, shape, table)
    if not coder.is_empty():
        raise BitstreamError("corrupt bitstream: the z stream holds more data than its latents")
    return z


# ------------------------------------------------------------------------------------------ bits-back
def q_params(mu: np.ndarray, sigma: np.ndarray, grid_exp: int) -> tuple[np.ndarray, np.ndarray]:
    """Q's mean and std in grid units (δ = 2^−grid_exp), snapped, std clamped to [2⁻⁶, 2¹²]."""
    scale = float(2 ** grid_exp)
    m = snap(np.asarray(mu, dtype=np.float64) * scale).reshape(-1)
    s = snap(np.clip(np.asarray(sigma, dtype=np.float64) * scale, MIN_Q_STD, MAX_Q_STD)).reshape(-1)
    return m, s


def q_capacity_bits(q_std: np.ndarray) -> float:
    """An upper estimate of the bits decoding ẑ with Q takes: Σ max(0, log2(σ·√(2πe))) + 1 per element
    (the entropy of a unit-bin discretized Gaussian is below ``log2(σ√(2πe)) + small`` and below 1 bit when
    σ is small, rounded up)."""
    s = np.asarray(q_std, dtype=np.float64)
    return float(np.sum(np.maximum(0.0, np.log2(s * np.sqrt(2 * np.pi * np.e))) + 1.0))


def _padding(n: int, seed: int) -> np.ndarray:
    """``n`` pseudo-random words, the first one on top (nearest to ξ)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)[::-1]


def q_support(q_mean: np.ndarray, q_std: np.ndarray, z_range: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Q is coded on a *local* support: symbol ``s ∈ [−R, R]`` around ``c = round(μ)`` (grid units), ẑ = c + s,
    with ``R = min(K/2, ⌈10·max σ⌉ + 2)`` and c clamped to ``[−K + R, K − R]`` (so ẑ stays codable by P).
    A leaky quantized Gaussian over all 2K+1 grid points would give every far symbol the coder's smallest
    probability (2⁻²⁴): decoding random side information would then land far in the tail about once per
    10⁴ elements, an expensive ẑ. Returns (c, μ − c, R); all from the snapped parameters, so the decoder
    computes the same."""
    r = int(min(z_range // 2, int(np.ceil(10.0 * float(np.max(q_std, initial=0.0)))) + 2))
    c = np.clip(np.round(q_mean), -z_range + r, z_range - r)
    return c.astype(np.int64), q_mean - c, r


def _decode_q(words: np.ndarray, q_mean: np.ndarray, q_std: np.ndarray, z_range: int):
    model, stack = _model()
    coder = stack.AnsCoder(words, seal=True)
    c, rel, r = q_support(q_mean, q_std, z_range)
    s = coder.decode(model.QuantizedGaussian(-r, r), rel, q_std)
    return coder, c + s.astype(np.int64)


@dataclass(frozen=True)
class BBEncoded:
    z_sym: np.ndarray  # ẑ in grid units (symbols), shaped like z
    coder: object  # the stack after decoding ẑ (ξ minus what ẑ took), ẑ still to be pushed with P
    pad_words: int
    consumed_bits: int  # bits decoding ẑ took from the stack


def _keystream(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)


def whiten(words: np.ndarray, seed: int) -> np.ndarray:
    """XOR with a pseudo-random keystream (its own inverse). ξ is whitened before ẑ is decoded from it: ANS
    decodes the first symbols from the top word of the stack, and a ξ that ends in zero bytes (text, zero
    padding to whole words) would otherwise put them in Q's far tail."""
    return np.bitwise_xor(np.asarray(words, dtype=np.uint32), _keystream(len(words), seed))


def take_z_from_side_info(xi: bytes, q_mean: np.ndarray, q_std: np.ndarray, shape: tuple[int, ...],
                          z_range: int, pad_seed: int) -> BBEncoded:
    """Alg. 1 line 4: decode ẑ from ξ with Q (adding the fewest padding words under ξ that keep the stack
    from running dry; two passes: a generous one measures what ẑ takes, the second pads just enough and
    must give the same ẑ)."""
    xi_words = whiten(side_info_words(xi), pad_seed ^ WHITEN_SALT)
    need = q_capacity_bits(q_std)
    generous = max(int(np.ceil((1.5 * need + 256) / 32)) - len(xi_words), 2 * (MIN_WORDS_LEFT + 1))
    words = np.concatenate([_padding(generous, pad_seed), xi_words])
    coder, z = _decode_q(words, q_mean, q_std, z_range)
    total = 32 * (len(words) + 1)
    consumed = total - int(coder.num_bits())
    if int(coder.num_bits()) < 32 * (MIN_WORDS_LEFT + 1):
        raise RuntimeError("internal error: the padded side-information stack ran dry")
    # the fewest padding words that leave MIN_WORDS_LEFT + 1 words on the stack after ẑ is taken (0 when
    # ξ alone is long enough: its remainder then stays in the z stream and is recovered with the rest)
    pad = max(0, int(np.ceil((consumed + 32 * (MIN_WORDS_LEFT + 1) - 32 * (len(xi_words) + 1)) / 32)))
    if pad < generous:
        words2 = np.concatenate([_padding(pad, pad_seed), xi_words]) if pad else xi_words
        # _padding(n) lists words bottom … top with the top word the same for every n
        coder2, z2 = _decode_q(words2, q_mean, q_std, z_range)
        if np.array_equal(z2, z) and int(coder2.num_bits()) >= 32 * (MIN_WORDS_LEFT + 1):
            return BBEncoded(z.astype(np.int64).reshape(shape), coder2, pad, consumed)
    return BBEncoded(z.astype(np.int64).reshape(shape), coder, generous, consumed)


def finish_z_stream(enc: BBEncoded, table: np.ndarray) -> bytes:
    """Alg. 1 line 5 (the z part): push ẑ with P onto the stack left by :func:`take_z_from_side_info`."""
    _encode_z_prior(enc.coder, enc.z_sym, table)
    return words_to_bytes(enc.coder.get_compressed())


def decode_z_for_bits_back(data: bytes, shape: tuple[int, ...], table: np.ndarray):
    """Alg. 1 line 6 (z): pop ẑ with P; returns (ẑ symbols, the stack that still holds ξ's remainder)."""
    _, stack = _model()
    coder = stack.AnsCoder(bytes_to_words(data)) if data else stack.AnsCoder()
    return _decode_z_prior(coder, shape, table), coder


def recover_side_info(coder, z_sym: np.ndarray, q_mean: np.ndarray, q_std: np.ndarray, record: BBRecord,
                      side_info_bits: int, pad_seed: int) -> bytes:
    """Alg. 1 line 8: push ẑ with Q, unseal, drop the padding, check ξ against the record's checksum."""
    model, _ = _model()
    if side_info_bits % 8:
        raise BitstreamError("corrupt bitstream: side information is not a whole number of bytes")
    try:
        c, rel, r = q_support(q_mean, q_std, record.z_range)
        sym = np.asarray(z_sym).reshape(-1) - c
        if sym.size and (sym.min() < -r or sym.max() > r):
            raise ValueError("ẑ outside Q's support")
        coder.encode_reverse(sym.astype(np.int32), model.QuantizedGaussian(-r, r), rel, q_std)
        words = coder.get_compressed(unseal=True)
    except BaseException as e:  # constriction raises AssertionError/ValueError on a stack it cannot unseal
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise SideInfoError("side information could not be recovered: the bits-back stack does not unseal "
                            "(the decoder's reproducible_bbvi differs from the encoder's, or the file is corrupt)"
                            ) from None
    n = side_info_bits // 8
    if len(words) < record.pad_words:
        raise SideInfoError("side information could not be recovered: fewer words than the padding")
    xi = words_to_bytes(whiten(words[record.pad_words:], pad_seed ^ WHITEN_SALT))
    if len(xi) < n or any(xi[n:]):
        raise SideInfoError("side information could not be recovered: its length does not match the header")
    xi = xi[:n]
    if checksum(xi) != record.checksum:
        raise SideInfoError("side information checksum mismatch: the decoder's reproducible_bbvi did not "
                            "reproduce the encoder's q(z) bit for bit (another thread count, CPU or library "
                            "version?), or the file is corrupt")
    return xi


__all__ = ["BBEncoded", "BBRecord", "SideInfoError", "checksum", "decode_y", "decode_z_for_bits_back", "encode_y",
           "finish_z_stream", "plain_decode_z", "plain_encode_z", "q_capacity_bits", "q_params", "recover_side_info",
           "side_info_words", "snap", "take_z_from_side_info"]
