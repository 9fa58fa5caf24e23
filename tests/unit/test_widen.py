"""Function-preserving widening: the wider model decodes the same picture, its new parts can learn."""

import pytest
import torch

from conftest import make_tiny_net
from rdopt.codecs.image.hyperprior import HyperpriorAdapter
from rdopt.codecs.image.widen import WidenError, widen_network
from rdopt.losses.elbo import elbo_loss


def _adapter(net):
    return HyperpriorAdapter(net.eval(), model_id="t", lmbda=0.0483)


@pytest.mark.parametrize("n,m", [(8, 20), (12, 12), (12, 20)])
def test_widened_model_has_the_same_reconstruction_and_old_rates(float64, n, m):
    narrow = make_tiny_net(0, n=8, m=12)
    narrow.update(force=True)
    wide = widen_network(narrow, n, m, seed=1)
    assert (wide.g_a[0].out_channels, wide.g_a[-1].out_channels) == (n, m)
    a, b = _adapter(narrow), _adapter(wide)
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        la, lb = a.amortize(x), b.amortize(x)
        torch.testing.assert_close(lb["y"][:, :12], la["y"], rtol=0, atol=1e-12)
        assert torch.all(lb["y"][:, 12:] == 0)  # new latent channels are born silent
        torch.testing.assert_close(lb["z"][:, :8], la["z"], rtol=0, atol=1e-12)
        assert torch.all(lb["z"][:, 8:] == 0)
        ea, eb = a.hard_evaluate(la), b.hard_evaluate(lb)
        torch.testing.assert_close(eb.x_hat, ea.x_hat, rtol=0, atol=1e-12)
        # the old y channels cost what they did; a silent channel (ŷ = μ = 0, smallest scale) ~1e-5 bits each
        extra_y = eb.rates["y"] - ea.rates["y"]
        assert torch.all(extra_y >= 0) and torch.all(extra_y < 1e-4 * lb["y"][:, 12:].numel() + 1e-9)
        # the new channels' prior sits just above the entropy model's floor, not in it (a prior at the floor is the
        # scale-floor collapse)
        scales, _ = b.prior(b.quantize(lb)["z"])
        floor = b.scale_floor
        torch.testing.assert_close(scales[:, 12:], torch.full_like(scales[:, 12:], 1.1 * floor), rtol=0, atol=1e-12)
        if n == 8:
            torch.testing.assert_close(eb.rates["z"], ea.rates["z"], rtol=0, atol=1e-9)
        else:  # new z channels pay the fresh density's price for coding 0
            assert torch.all(eb.rates["z"] > ea.rates["z"])


def test_widened_model_codes_the_same_picture_through_real_bitstreams():
    narrow = make_tiny_net(2, n=8, m=12)
    narrow.update(force=True)
    wide = widen_network(narrow, 8, 24, seed=5)
    a, b = _adapter(narrow), _adapter(wide)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    xa = a.reconstruct(a.decompress(a.compress(a.quantize(a.amortize(x)))))
    coded = b.compress(b.quantize(b.amortize(x)))
    xb = b.reconstruct(b.decompress(coded))
    torch.testing.assert_close(xb, xa, rtol=0, atol=1e-5)
    # the stock CompressAI decoder of the wide model agrees
    stock = wide.decompress([coded.streams["y"], coded.streams["z"]], list(coded.shapes["z"][1:]))["x_hat"]
    torch.testing.assert_close(stock, xb.clamp(0, 1), rtol=0, atol=1e-5)


def test_new_channels_receive_gradients_under_noise_training():
    narrow = make_tiny_net(0, n=8, m=12)
    wide = widen_network(narrow, 12, 20, seed=1).train()
    model = HyperpriorAdapter(wide, model_id="t", lmbda=0.0483)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    elbo_loss(model, x, 0.0483, torch.Generator().manual_seed(1)).loss.mean().backward()
    assert wide.g_s[0].weight.grad[12:].abs().sum() > 0  # weights out of the new y channels (ỹ_new = noise)
    assert wide.g_a[2].weight.grad[:, 8:].abs().sum() > 0  # weights out of new hidden g_a units
    assert wide.g_a[6].weight.grad[12:].abs().sum() > 0  # the new y channels themselves (through their rate)
    assert wide.h_s[4].weight.grad[32:40].abs().sum() > 0  # their predicted means (h_s outputs [scales, means])


def test_widening_is_seeded_and_refuses_what_it_cannot_do():
    from compressai.models import ScaleHyperprior

    narrow = make_tiny_net(0, n=8, m=12)
    w1, w2 = widen_network(narrow, 12, 16, seed=7), widen_network(narrow, 12, 16, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(w1.parameters(), w2.parameters()))
    with pytest.raises(WidenError, match="cannot narrow a model: it has N=8, M=12"):
        widen_network(narrow, 8, 8)
    with pytest.raises(WidenError, match="mean-scale hyperprior only"):
        widen_network(ScaleHyperprior(8, 12), 8, 16)
