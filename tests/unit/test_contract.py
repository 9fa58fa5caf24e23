"""The codec contract (rdopt.infer.contract) over every adapter: rdopt's image adapter (mean-scale and
scale-only), and the toy image and two-frame video codecs written only against the protocol."""

import pytest
import torch

from conftest import pattern_image, tiny_adapter
from rdopt.core.types import LatentCodec
from rdopt.data.images import pad, to_tensor
from rdopt.infer import contract
from toy_codecs import ToyImageCodec, ToyVideoCodec, smooth_frames, smooth_images


def _image_batch():
    return torch.cat([pad(to_tensor(pattern_image(40, 56, s)), 64) for s in range(2)])


def _bits_back():
    from conftest import GOLDEN
    from rdopt.codecs.image.bitsback import load_bitsback

    return load_bitsback(checkpoint=GOLDEN / "tiny.pt")


CODECS = {
    "hyperprior-mean-scale": lambda request: (request.getfixturevalue("tiny_model"), _image_batch()),
    "hyperprior-scale-only": lambda request: (tiny_adapter(scale_only=True), _image_batch()),
    # the bits-back variant through the protocol (plain coding of ẑ with P, no side information)
    "bits-back": lambda request: (_bits_back(), _image_batch()),
    "toy-image": lambda request: (ToyImageCodec(), smooth_images(2, 16, 24)),
    "toy-video": lambda request: (ToyVideoCodec(), smooth_frames(2, 16, 24)),
}


@pytest.fixture(params=list(CODECS))
def codec_and_input(request):
    return CODECS[request.param](request)


def test_adapters_satisfy_the_protocol(codec_and_input):
    codec, _ = codec_and_input
    assert isinstance(codec, LatentCodec)


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda c: c.__name__)
def test_contract(codec_and_input, check):
    codec, x = codec_and_input
    check(codec, x)


def test_a_broken_codec_fails_the_contract():
    """The checks can fail: a codec whose decoder ignores one stream is caught."""

    class Broken(ToyImageCodec):
        def decompress(self, coded):
            out = super().decompress(coded)
            return out.merged({"y": torch.zeros_like(out["y"])})

    with pytest.raises(AssertionError, match="decompress"):
        contract.check_coding_round_trip(Broken(), smooth_images(2, 16, 24))


def test_a_parent_declared_too_narrowly_is_named():
    """The encoder of r1 reads y0: a codec that leaves y0 out of r1's parents is told which promise it broke."""
    from rdopt.core.types import LatentSpec

    class Narrow(ToyVideoCodec):
        @property
        def latents(self):
            specs = list(super().latents)
            specs[2] = LatentSpec("r1", "residual", ("z0",), frame=1)
            return tuple(specs)

    with pytest.raises(AssertionError, match=r"infer\('r1'\) reads a latent beyond its declared parents \('z0',\).*'y0'"):
        contract.check_amortize(Narrow(), smooth_frames(2, 16, 24))


def test_a_relaxation_applied_twice_is_caught():
    """Applying a latent's relaxation twice (e.g. once for the rate, again for the reconstruction) draws two
    different values under a stochastic relaxation: the contract refuses it (each value is relaxed once, in one call
    or in the passes of a context model)."""

    class Twice(ToyImageCodec):
        def evaluate(self, latents, relax):
            relax["y"](latents["y"], torch.zeros_like(latents["y"]))  # an extra application
            return super().evaluate(latents, relax)

    with pytest.raises(AssertionError, match="saw 576 values in one evaluation, the latent has 288"):
        contract.check_evaluate(Twice(), smooth_images(2, 16, 24))


def test_passes_that_relax_a_part_twice_are_caught():
    """A codec that relaxes in passes (a checkerboard context model) must relax each value exactly once: one half
    twice and the other never is refused even though the counts add up."""

    class HalfTwice(ToyImageCodec):
        def evaluate(self, latents, relax):
            y = latents["y"]
            half = torch.zeros_like(y, dtype=torch.bool)
            half[..., ::2] = True
            for _ in range(2):
                relax["y"](y[half], torch.zeros_like(y[half]))
            inner = dict(relax)
            inner["y"] = lambda v, offset: v  # the evaluation proper, without the marker
            return super().evaluate(latents, inner)

    with pytest.raises(AssertionError, match="do not relax each value of the latent once"):
        contract.check_evaluate(HalfTwice(), smooth_images(2, 16, 24))
