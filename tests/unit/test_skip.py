"""Skip mode: the ``skip`` stream's payload (rdopt.coding.skip), the decoder's reconstruction with skips and the
encoder's per-block bookkeeping (rdopt.codecs.video.skip)."""

import numpy as np
import pytest
import torch

from rdopt.coding.container import BitstreamError
from rdopt.coding.skip import (FrameSkip, block_grid, max_mask_words, mask_bits, pack_skip, probability_byte,
                               stream_name, unpack_skip)
from video_fixtures import blockmean_video_codec, object_clip, tiny_video_codec


# ------------------------------------------------------------------------------------------ the payload
def test_payload_round_trips_and_costs_about_the_ideal_bits():
    rng = np.random.default_rng(0)
    assert pack_skip(FrameSkip("frame")) == b"\x01" and unpack_skip(b"\x01", 4, 6) == FrameSkip("frame")
    for rows, cols in ((1, 1), (4, 6), (12, 12), (30, 40)):
        for frac in (0.02, 0.3, 0.9, 1.0):
            mask = rng.random((rows, cols)) < frac
            mask.flat[0] = True
            data = pack_skip(FrameSkip("blocks", mask))
            assert data[0] == 2 and data[1] == probability_byte(mask)
            back = unpack_skip(data, rows, cols)
            assert back.mode == "blocks" and np.array_equal(back.mask, mask)
            assert np.array_equal(unpack_skip(data).mask, mask)  # the grid it states (rdopt info)
            ideal = mask_bits(int(mask.sum()), mask.size, data[1])
            assert 8 * len(data) <= ideal + 8 * 4 + 64 + 32  # mode, p, grid; the coder's head and a word
            assert len(data[4:]) // 4 <= max_mask_words(mask.size)
    assert block_grid(64, 128) == (4, 8) and block_grid(65, 1) == (5, 1) and stream_name(3) == "skip_3"
    assert probability_byte(np.ones((2, 2), bool)) == 255 and probability_byte(np.eye(40, dtype=bool)) == 6


def test_frame_skip_checks_its_fields():
    with pytest.raises(ValueError):
        FrameSkip("half")
    with pytest.raises(ValueError):
        FrameSkip("blocks", np.zeros((2, 2), bool))  # no skipped block
    with pytest.raises(ValueError):
        FrameSkip("frame", np.ones((2, 2), bool))
    assert FrameSkip("blocks", np.eye(3, dtype=bool)).count(3, 3) == 3 and FrameSkip("frame").count(3, 4) == 12


@pytest.mark.parametrize("data, match", [
    (b"", "empty skip stream"),
    (b"\x00", "unknown skip mode 0"),
    (b"\x03\x80", "unknown skip mode 3"),
    (b"\x01\x00", "has 2 bytes, not 1"),
    (b"\x02\x80", "block skip stream of 2 bytes"),
    (b"\x02\x00\x04\x06" + bytes(4), "probability 0"),
    (b"\x02\x80\x04\x07" + bytes(4), "mask of 4×7 blocks, the frame has 4×6"),
    (b"\x02\x80\x00\x06" + bytes(4), "grid of 0×6"),
    (b"\x02\x80\x81\x81\x81", "truncated or too long"),
    (b"\x02\x80\x04\x06" + bytes(3), "not whole 32-bit words"),
    (b"\x02\x80\x04\x06" + bytes(4 * 12), "too long"),
    (b"\x02\x80\x04\x06" + bytes(4 * 2), "does not decode"),  # ANS data never ends in a zero word
])
def test_corrupt_payloads_are_bitstream_errors(data, match):
    with pytest.raises(BitstreamError, match=match) as e:
        unpack_skip(data, 4, 6, where="frame 1 of a GoP: ")
    assert "\n" not in str(e.value) and "frame 1 of a GoP" in str(e.value)


def test_a_mask_must_decode_to_exactly_its_blocks_and_mark_one():
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = mask[3, 5] = True
    good = pack_skip(FrameSkip("blocks", mask))
    with pytest.raises(BitstreamError, match="more data than"):
        unpack_skip(good + good[4:8], 4, 6)  # a word too many
    with pytest.raises(BitstreamError):
        unpack_skip(good[:-4], 4, 6)  # a word short: decodes to other symbols and leaves the coder elsewhere
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(np.zeros(24, np.int32), constriction.stream.model.Bernoulli(0.5, perfect=False))
    none = b"\x02\x80\x04\x06" + np.asarray(coder.get_compressed(), dtype="<u4").tobytes()
    with pytest.raises(BitstreamError, match="without a skipped block"):
        unpack_skip(none, 4, 6)
    # random payloads never crash: each is a mask or a BitstreamError
    rng = np.random.default_rng(1)
    for _ in range(500):
        data = bytes([2, int(rng.integers(0, 256)), 4, 6]) + rng.bytes(int(rng.choice([0, 4, 8, 12, 16])))
        try:
            unpack_skip(data, 4, 6)
        except BitstreamError:
            pass


# ------------------------------------------------------------------------------------------ masks and names
def test_pixel_and_position_masks():
    from rdopt.codecs.video.skip import pixel_mask, position_mask

    mask = np.array([[True, False], [False, True]])
    like = torch.zeros(1)
    pix = pixel_mask(mask, 30, 32, like)  # the last block row is partial
    assert pix.shape == (1, 1, 30, 32) and pix[0, 0, :16, :16].all() and not pix[0, 0, :16, 16:].any()
    assert pix[0, 0, 16:, 16:].all() and int(pix.sum()) == 16 * 16 + 14 * 16
    full = pixel_mask(mask, 32, 32, like)
    # stride 4: every position under a skipped block; stride 16: one per block; stride 32: a cell over four
    # blocks is at its mode only when all four skip
    assert torch.equal(position_mask(full, (3, 8, 8))[0, 0], torch.as_tensor(mask).repeat_interleave(4, 0)
                       .repeat_interleave(4, 1))
    assert torch.equal(position_mask(full, (3, 2, 2))[0, 0], torch.as_tensor(mask))
    assert not position_mask(full, (3, 1, 1)).any() and position_mask(pixel_mask(np.ones((2, 2), bool), 32, 32, like),
                                                                       (3, 1, 1)).all()


def test_residual_latents_are_found_by_kind_and_skip_is_a_reserved_name():
    from rdopt.codecs.video.pframe import pframe_problems
    from rdopt.codecs.video.skip import frame_names

    g = tiny_video_codec().gop(3)
    assert frame_names(g, 2) == {"motion": "w_2", "motion-hyper": "z_w_2", "residual": "y_2", "residual-hyper": "z_y_2"}

    class Named(torch.nn.Module):
        names = ("mv", "mvh", "skip", "rh")

    assert any("must not be skip" in p for p in pframe_problems(Named()))


# ------------------------------------------------------------------------------------------ the codecs
def _gop(codec, frames, h, w):
    from rdopt.api.video import amortized
    from rdopt.data.images import to_batch

    g = codec.gop(len(frames))
    x = to_batch(frames, codec.pad_multiple, "cpu", torch.float32)[None]
    return g, x, amortized(g, x, h, w)


def test_frame_skip_needs_a_motion_only_decompress():
    codec = tiny_video_codec()
    assert codec.frame_skip_ok()

    class Whole(type(codec.pframe)):
        def decompress(self, strings, shapes, dtype):
            return {n: strings[n] and torch.zeros(1) for n in self.names}  # needs all four strings

    other = tiny_video_codec()
    other.pframe.__class__ = Whole
    other._frame_skip_ok = None
    assert not other.frame_skip_ok()


def test_reconstruct_applies_skips_frame_by_frame():
    """The decoder's chain: a block-skipped frame is the prediction in its skipped blocks and the decoded frame
    elsewhere, a frame skipped whole is the prediction, and each is the next frame's reference."""
    from rdopt.codecs.video.skip import reconstruct
    from rdopt.core.types import Latents
    from rdopt.relax.rounding import hard

    codec = blockmean_video_codec()
    frames, _ = object_clip(3)
    g, x, lat = _gop(codec, frames, 64, 96)
    mask = np.zeros((4, 8), bool)
    mask[2:, 3:] = True
    skips = (None, FrameSkip("blocks", mask), FrameSkip("frame"))
    x_hat, rates = reconstruct(g, lat, skips)
    pf = codec.pframe
    h = {n: hard() for n in pf.names}
    ev0 = g.hard_evaluate(Latents((n, lat[n]) for n in ("y_0", "z_0")))
    assert torch.equal(x_hat[:, 0], ev0.x_hat[:, 0])
    m1 = pf.evaluate_motion(lat["w_1"], lat["z_w_1"], ev0.x_hat[:, 0], h)
    r1 = pf.evaluate_residual(lat["y_1"], lat["z_y_1"], h, m1)
    pix = torch.zeros(1, 1, 64, 128, dtype=torch.bool)
    pix[..., 32:, 48:] = True
    assert torch.equal(x_hat[:, 1], torch.where(pix, m1.prediction, r1.x_hat))
    m2 = pf.evaluate_motion(lat["w_2"], lat["z_w_2"], x_hat[:, 1], h)  # the reference is the skipped frame
    assert torch.equal(x_hat[:, 2], m2.prediction)
    assert "y_2" not in rates and "z_y_2" not in rates and set(rates) >= {"y_1", "w_2", "z_w_2"}
    with pytest.raises(ValueError, match="never skipped"):
        reconstruct(g, lat, (FrameSkip("frame"), None, None))


@pytest.mark.parametrize("make", [blockmean_video_codec, tiny_video_codec])
def test_block_rates_from_the_entropy_model_equal_those_measured_through_the_codec(make):
    """``residual_position_bits`` (the entropy model per position, summed under each block) and the generic
    measurement through ``evaluate_residual`` (one block's positions at their mode per batch item) agree, and
    so do the skip decisions made from either (a stride-4 and a stride-16 residual latent)."""
    from rdopt.codecs.video import skip as S

    codec = make()
    frames, _ = object_clip(3)
    g, x, lat = _gop(codec, frames, 64, 96)
    choice = S.choose_skips(g, x, lat, 64, 96, codec.lmbda)
    seen = []
    real = S._block_savings

    def spy(*a, **k):
        out = real(*a, **k)
        seen.append(out)
        return out

    S._block_savings = spy
    try:
        S.choose_skips(g, x, lat, 64, 96, codec.lmbda)
        cls = type(codec.pframe)
        hook = cls.residual_position_bits
        cls.residual_position_bits = None
        try:
            measured = S.choose_skips(g, x, lat, 64, 96, codec.lmbda)
        finally:
            cls.residual_position_bits = hook
    finally:
        S._block_savings = real
    assert len(seen) == 4  # frames 1 and 2, with the hook and measured
    for a, b in zip(seen[:2], seen[2:]):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-2)
    assert measured.cost == pytest.approx(choice.cost) and [s and s.mode for s in measured.skips] == \
        [s and s.mode for s in choice.skips]
