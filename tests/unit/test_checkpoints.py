"""Checkpoints a researcher brings: training-checkpoint layouts, tables saved or not, the checkpoint's own entropy
tables kept (so the stock decompress of the same file decodes rdopt's bitstream identically), the architecture
inferred from the state dict, and mismatches named key by key."""

import pytest
import torch

from rdopt.codecs.image.loading import ModelUnavailable, architecture_of, load_model, tables_filled


def _net(kind="mean", n=16, m=24, seed=0):
    from compressai.models import MeanScaleHyperprior, ScaleHyperprior

    torch.manual_seed(seed)
    return (MeanScaleHyperprior if kind == "mean" else ScaleHyperprior)(N=n, M=m).eval()


def test_weights_under_network_or_model_keys_load(tmp_path):
    net = _net()
    net.update(force=True)
    for key in ("network", "model", "state_dict"):
        path = tmp_path / f"{key}.pth"
        torch.save({key: net.state_dict(), "epoch": 3}, path)
        m = load_model("mbt2018-mean", 3, checkpoint=path)
        assert torch.equal(m.net.g_a[0].weight, net.g_a[0].weight)


def test_a_checkpoint_saved_before_update_gets_tables(tmp_path):
    net = _net()
    state = net.state_dict()
    assert not tables_filled(state)  # the keys exist, the tables are empty
    torch.save(state, tmp_path / "raw.pth")
    m = load_model(checkpoint=tmp_path / "raw.pth")  # no --model: rdopt-msh's architecture
    assert m.model_id == "rdopt-msh-custom" and m.net.entropy_bottleneck._quantized_cdf.numel() > 0
    x = torch.rand(1, 3, 64, 64)
    assert m.decompress(m.compress(m.quantize(m.amortize(x))))["y"].shape[1] == 24


def test_the_checkpoints_own_tables_are_kept_so_the_stock_decoder_agrees(tmp_path):
    from compressai.models import MeanScaleHyperprior

    net = _net(seed=1)
    odd = torch.exp(torch.linspace(-2.2, 3.0, 40))  # not CompressAI's default 64-level table
    net.update(scale_table=odd, force=True)
    torch.save(net.state_dict(), tmp_path / "odd.pth")
    ours = load_model("mbt2018-mean", 3, checkpoint=tmp_path / "odd.pth")
    assert torch.equal(ours.net.gaussian_conditional.scale_table, net.gaussian_conditional.scale_table)
    stock = MeanScaleHyperprior.from_state_dict(torch.load(tmp_path / "odd.pth", weights_only=True)).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    coded = ours.compress(ours.quantize(ours.amortize(x)))
    with torch.no_grad():
        stock_out = stock.decompress([coded.streams["y"], coded.streams["z"]], coded.shapes["z"][-2:])["x_hat"]
        rdopt_out = ours.reconstruct(ours.decompress(coded)).clamp(0, 1)
    assert torch.equal(stock_out, rdopt_out)


def test_architecture_is_inferred_and_mismatches_are_named(tmp_path):
    scale = _net("scale", seed=2)
    scale.update(force=True)
    torch.save(scale.state_dict(), tmp_path / "scale.pth")
    assert architecture_of(scale.state_dict()) == "bmshj2018-hyperprior"
    assert architecture_of(_net().state_dict()) == "mbt2018-mean"
    m = load_model(checkpoint=tmp_path / "scale.pth")  # no --model: taken for what it is
    assert m.model_id == "bmshj2018-hyperprior"
    with pytest.raises(ModelUnavailable) as e:
        load_model("mbt2018-mean", 3, checkpoint=tmp_path / "scale.pth")
    msg = str(e.value)
    assert "looks like bmshj2018-hyperprior" in msg and "other shapes for h_s.0.weight" in msg
    assert "\n" not in msg
    ctx = dict(_net().state_dict(), **{"context_prediction.weight": torch.zeros(1)})
    with pytest.raises(ModelUnavailable, match="context model"):
        architecture_of(ctx)
