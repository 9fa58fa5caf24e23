"""Rate control: size strings, the λ search's next point, and the guarantee that the search never
returns a file above the target."""

import math

import numpy as np
import pytest
import torch

from conftest import pattern_image
from rdopt.ratecontrol.image import SizeError, Trial, _next_lambda, bytes_for_bpp, parse_size


@pytest.mark.parametrize("text,n", [("20000", 20000), ("20000B", 20000), ("20kB", 20000), ("20k", 20000),
                                    ("20 KB", 20000), ("20KiB", 20480), ("1.5MB", 1500000), ("1MiB", 1048576),
                                    ("0.5kB", 500), ("999.9", 999), ("2e3", 2000)])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "kB", "20 kilo", "-5kB", "0", "0.5", "20TB", "nan", "inf", "1e30", "20 k B", "twenty"])
def test_bad_sizes(text):
    with pytest.raises(SizeError):
        parse_size(text)


def test_bytes_for_bpp():
    assert bytes_for_bpp(0.25, 768, 512) == 12288
    assert bytes_for_bpp(1.0, 3, 3) == 1  # rounded down
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(SizeError):
            bytes_for_bpp(bad, 10, 10)
    with pytest.raises(SizeError, match="less than one byte"):
        bytes_for_bpp(0.1, 5, 5)


def _t(lm, n):
    return Trial("search", 3, lm, 10, 10, n, 0.0, 30.0, 0.0)


def test_next_lambda_brackets_then_bisects():
    lo, hi = 1e-4, 1.0
    # one point above the target: step down along the default slope, at most 4×
    nxt = _next_lambda([_t(0.01, 2000)], 1000, 995, lo, hi)
    assert 0.01 / 4 <= nxt < 0.01
    # bracketed: strictly inside the bracket, the secant point if it is not near an end
    a, b = _t(0.01, 1100), _t(0.005, 900)
    nxt = _next_lambda([a, b], 1000, 995, lo, hi)
    assert 0.005 < nxt < 0.01
    t = (math.log(995) - math.log(900)) / (math.log(1100) - math.log(900))
    assert nxt == pytest.approx(math.exp(math.log(0.005) + t * math.log(2)))
    # a secant point near an end of the bracket is replaced by the bisection point
    nxt = _next_lambda([_t(0.01, 1001), _t(0.005, 100)], 1000, 995, lo, hi)
    assert nxt == pytest.approx(math.sqrt(0.01 * 0.005))
    # non-monotone points (SGA noise): the bracket is the smallest λ above and the largest fitting λ below it
    pts = [_t(0.01, 1100), _t(0.02, 990), _t(0.004, 950)]
    nxt = _next_lambda(pts, 1000, 995, lo, hi)
    assert 0.004 < nxt < 0.01
    # at a bound already tried: nothing left
    assert _next_lambda([_t(hi, 500)], 1000, 995, lo, hi) is None
    assert _next_lambda([_t(lo, 5000)], 1000, 995, lo, hi) is None


def test_loop_control_rebases_the_best_point():
    """The loop's control hook: after it changes the objective, the best-so-far is measured under the new one,
    so the run follows the new objective (without re-basing it would keep the old optimum)."""
    from rdopt.infer.loop import optimize

    c, floor = torch.tensor(1.0), torch.tensor(0.0)
    seen = []

    def obj(params, step=0):
        return (params[0] - c).pow(2).sum(1) + floor

    def control(step, best):
        seen.append(step)
        if step == 100:  # a new objective whose minimum lies above every value of the old one near its optimum
            c.fill_(-1.0)
            floor.fill_(1.0)
            return True
        return False

    res = optimize([torch.zeros(2, 3)], obj, obj, 300, 0.05, eval_every=10, progress=False, control=control)
    assert seen == list(range(10, 301, 10))
    assert torch.allclose(res.params[0], torch.full((2, 3), -1.0), atol=0.05)
    assert torch.allclose(res.best_loss, obj(res.params), atol=1e-6)


@pytest.fixture(scope="module")
def image():
    from rdopt.data.images import LoadedImage

    return LoadedImage(pattern_image(64, 80, seed=2), False, False, "RGB")


@pytest.fixture(scope="module")
def plain(tiny_model, image):
    from rdopt.api.image import encode_image
    from rdopt.infer.options import SolverOptions

    return encode_image(tiny_model, image, SolverOptions(steps=60, progress=False))


def test_never_above_the_target(tiny_model, image, plain):
    from rdopt.api.image import decode_bytes
    from rdopt.coding.container import unpack
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.image import encode_to_size

    opts = SolverOptions(steps=60, progress=False)
    n0 = plain.stats.file_bytes
    targets = [int(n0 * f) for f in (0.5, 0.93, 0.97, 1.0, 1.03, 1.08, 3.0)]
    hits = 0
    for target in targets:
        rc = encode_to_size(image, target, opts, lambda q: tiny_model, [3])
        enc = rc.encoded
        sizes = [t.bytes for t in rc.trials]
        assert enc.stats.file_bytes == len(enc.data)
        if rc.in_range:
            assert len(enc.data) <= target, (target, sizes)
        else:  # nothing at or below the target was made: the smallest file, and a message
            assert min(sizes) > target and len(enc.data) == min(sizes) and "below the smallest" in rc.message
        assert rc.in_range == (min(sizes) <= target)
        assert rc.hit == (0.99 * target <= len(enc.data) <= target)
        hits += rc.hit
        assert rc.steps <= 2.2 * opts.steps  # the budget: one controlled run + short searches (+ the safety net)
        search = [t for t in rc.trials if t.phase in ("search", "floor")]
        assert rc.runs == 1 + len(search) and rc.steps == opts.steps + sum(t.steps for t in search)
        assert sum(t.phase == "anneal" for t in rc.trials) == min(10, opts.steps // opts.eval_every)  # control points
        assert enc.stats.rate_control["target_bytes"] == target and enc.stats.messages[-1:] == ((rc.message,) if rc.message else ())[-1:]
        # the stock decoder reads it
        rgb, pixels, _ = decode_bytes(enc.data, tiny_model)
        assert np.array_equal(pixels, enc.pixels)
        f = unpack(enc.data)
        stock = tiny_model.net.decompress([[f.strings[0]], [f.strings[1]]], [1, 2])["x_hat"][..., :64, :80]  # z: 1×2
        assert np.array_equal(stock[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy(), pixels)
    assert hits >= 2  # the tiny model's range is narrow (a few %), but targets inside it are hit


def test_safety_net_goes_below_the_target_when_the_search_runs_out(tiny_model, image, plain):
    """No search runs (max_search=0) and a target below what the controlled run made: the safety net's short
    runs towards the floor of the λ span make a file at or below the target, which is returned; when even the
    floor is above, the smallest file comes with the out-of-range message."""
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.image import encode_to_size

    opts = SolverOptions(steps=60, progress=False)
    outcomes = set()
    for f in (0.9, 0.96, 0.98):
        target = int(plain.stats.file_bytes * f)
        rc = encode_to_size(image, target, opts, lambda q: tiny_model, [3], max_search=0)
        anneal = [t for t in rc.trials if t.phase == "anneal"]
        floor = [t for t in rc.trials if t.phase == "floor"]
        trace = [(t.phase, t.lmbda, t.bytes) for t in rc.trials]
        assert len(rc.encoded.data) <= target or not rc.in_range, trace
        if min(t.bytes for t in anneal) <= target:
            assert not floor, trace
            outcomes.add("search enough")
            continue
        assert 1 <= len(floor) <= 2, trace
        assert all(t.lmbda < min(a.lmbda for a in anneal) for t in floor), trace
        if any(t.bytes <= target for t in floor):
            assert rc.in_range and len(rc.encoded.data) <= target, trace
            outcomes.add("net")
        else:  # even the floor of the span is above: out of range, said so
            assert "below the smallest" in rc.message, trace
            outcomes.add("out of range")
    assert "net" in outcomes, outcomes


def test_out_of_range_above_says_so(tiny_model, image, plain):
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.image import encode_to_size

    rc = encode_to_size(image, plain.stats.file_bytes * 3, SolverOptions(steps=30, progress=False), lambda q: tiny_model, [3])
    assert rc.in_range and not rc.hit and "above what the model" in rc.message
    assert rc.encoded.stats.file_bytes <= plain.stats.file_bytes * 3


def test_target_size_with_ms_ssim_and_a_weight(tiny_model, image, plain):
    """The search runs with any distortion and weight map; what it returns still fits."""
    from rdopt.core.rd import Distortion
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.image import encode_to_size

    w = torch.ones(64, 80)
    w[10:40, 10:50] = 5.0
    target = plain.stats.file_bytes
    rc = encode_to_size(image, target, SolverOptions(steps=30, progress=False), lambda q: tiny_model, [3],
                        distortion=Distortion(0.5), weight=w)
    assert rc.encoded.stats.distortion == "mix:0.5" and rc.encoded.stats.weighted
    assert not rc.in_range or rc.encoded.stats.file_bytes <= target


def test_arguments_are_checked(tiny_model, image):
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.image import encode_to_size

    with pytest.raises(ValueError, match="optimizing method"):
        encode_to_size(image, 500, SolverOptions(method="amortized", steps=0), lambda q: tiny_model, [3])
    with pytest.raises(ValueError, match="joint solver"):
        encode_to_size(image, 500, SolverOptions(steps=10, solver="sequential"), lambda q: tiny_model, [3])
    with pytest.raises(SizeError):
        encode_to_size(image, 0, SolverOptions(steps=10), lambda q: tiny_model, [3])


def test_safety_net_falls_back_to_a_lower_quality(tiny_checkpoint, image):
    """A target the chosen quality cannot reach even at the floor of its λ span: the lower quality's plain run
    gives a file at or below it (and two qualities of equal λ do not break the first-λ interpolation)."""
    from rdopt.codecs.image.loading import load_model
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.image import encode_to_size

    hi = load_model("rdopt-msh", 3, checkpoint=tiny_checkpoint)
    lo = load_model("rdopt-msh", 3, checkpoint=tiny_checkpoint)
    with torch.no_grad():  # another model that makes much smaller files (weaker latents)
        lo.net.g_a[-1].weight.mul_(0.3)
        lo.net.g_a[-1].bias.mul_(0.3)
    lo.quality = 2
    models = {2: lo, 3: hi}
    opts = SolverOptions(steps=60, progress=False)
    plain = encode_to_size(image, 10**6, opts, models.__getitem__, [3]).trials  # q3's own range, for the target
    target = int(0.96 * min(t.bytes for t in plain if t.phase == "anneal"))
    rc = encode_to_size(image, target, opts, models.__getitem__, [2, 3], max_search=0,
                        lambdas={2: 0.0035, 3: 0.0067})
    trace = [(t.phase, t.quality, t.lmbda, t.bytes) for t in rc.trials]
    if all(t.bytes > target for t in rc.trials if t.phase in ("anneal", "floor") and t.quality == 3):
        assert any(t.phase == "floor" and t.quality == 2 for t in rc.trials), trace
        assert rc.encoded.stats.quality == 2 and len(rc.encoded.data) <= target and rc.in_range, trace
    else:
        assert len(rc.encoded.data) <= target, trace
    # equal λ for both qualities: no division by zero in the first λ
    rc = encode_to_size(image, target, SolverOptions(steps=20, progress=False), models.__getitem__, [2, 3], max_search=0)
    assert len(rc.encoded.data) <= target or not rc.in_range
