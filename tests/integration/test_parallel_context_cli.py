"""`rdopt train / encode / decode / info` with parallel context models: rdopt-scc grown from a (tiny) rdopt-msh by
`rdopt train --architecture rdopt-scc`, and a tiny random elic2022-chandelier checkpoint — SGA, ROI and MS-SSIM
encodes, decodes that match the reported PSNR, the stock CompressAI decoder on the file's streams, and the refusals."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_error_line, training_photos_folder
from rdopt.metrics.quality import psnr

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def scc_checkpoint(tmp_path_factory):
    """rdopt-scc grown from a tiny rdopt-msh (N=16, M=24) and trained 2 steps by the CLI."""
    from rdopt.cli.main import main

    d = tmp_path_factory.mktemp("scc")
    data = training_photos_folder(d)
    base = ["--data", str(data), "--crop", "64", "--batch", "1", "--quality", "3", "--threads", "1"]
    msh = d / "msh.pt"
    assert main(["train", "--out", str(d / "msh.state.pt"), "--channels", "16", "24", "--steps", "1", "--export", str(msh),
                 *base]) == 0
    scc = d / "scc.pt"
    assert main(["train", "--architecture", "rdopt-scc", "--init", str(msh), "--out", str(d / "scc.state.pt"),
                 "--steps", "2", "--export", str(scc), *base]) == 0
    return {"msh": msh, "scc": scc, "dir": d}


def test_training_grows_rdopt_msh_into_rdopt_scc(scc_checkpoint):
    from rdopt.codecs.image.loading import architecture_of, load_model, read_state_dict
    from rdopt.codecs.image.parallel import ParallelContextAdapter

    state = read_state_dict(scc_checkpoint["scc"])
    assert architecture_of(state) == "rdopt-scc"
    m = load_model(checkpoint=scc_checkpoint["scc"])
    assert isinstance(m, ParallelContextAdapter) and m.model_id == "rdopt-scc-custom"
    assert [p[2] for p in m.coding_passes()] == [2, 2, 2, 2, 4, 4, 8, 8, 8, 8]  # 24/12·(1, 1, 2, 4, 4), two passes each
    # every parameter is float16-exact (shipped precision) and the groups share one coder table
    assert all(torch.equal(p, p.half().float()) for p in m.net.parameters())


def test_a_widened_rdopt_msh_grows_into_rdopt_scc_that_codes_as_it_does(scc_checkpoint, tmp_path):
    """--channels with --architecture rdopt-scc --init rdopt-msh: the hyperprior is widened (function-preserving) and
    then grown; at birth the model reconstructs what rdopt-msh does from the same picture, at the same rate of y."""
    from rdopt.codecs.image.loading import channels_from_state, load_model
    from rdopt.core.rd import rd_cost
    from rdopt.training.config import TrainConfig
    from rdopt.training.image import ImageTask

    from conftest import pattern_image

    cfg = TrainConfig(out=str(tmp_path / "w.state.pt"), lmbda=0.0067, steps=0, architecture="rdopt-scc",
                      channels=(24, 24), init=str(scc_checkpoint["msh"]))
    task = ImageTask(cfg, torch.device("cpu"))
    assert type(task.module).__name__ == "SCCNetwork" and channels_from_state(task.module.state_dict()) == (24, 24)
    task.module.eval().update(force=True)
    msh = load_model(checkpoint=scc_checkpoint["msh"])
    x = torch.from_numpy(pattern_image(64, 64, 5)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        a, b = msh.amortize(x), task.model.amortize(x)
        assert torch.equal(a["y"], b["y"]) and bool((b["z"][:, 16:] == 0).all())
        ea, eb = msh.hard_evaluate(msh.quantize(a)), task.model.hard_evaluate(task.model.quantize(b))
    torch.testing.assert_close(eb.x_hat, ea.x_hat, rtol=0, atol=1e-5)
    torch.testing.assert_close(eb.rates["y"], ea.rates["y"], rtol=1e-4, atol=1e-3)
    assert rd_cost(eb, x, 0.0067).loss.item() == pytest.approx(rd_cost(ea, x, 0.0067).loss.item(), rel=0.02)


def test_the_cli_widens_an_rdopt_msh_init_and_refuses_to_widen_an_rdopt_scc(cli, scc_checkpoint, tmp_path):
    from rdopt.codecs.image.loading import architecture_of, channels_from_state, read_state_dict

    data = scc_checkpoint["dir"] / "data"
    base = ["train", "--architecture", "rdopt-scc", "--channels", "24", "24", "--steps", "1", "--data", data, "--crop",
            "64", "--batch", "1", "--quality", "3", "--threads", "1"]
    wide = tmp_path / "wide.pt"
    code, _, err = cli(*base, "--init", scc_checkpoint["msh"], "--out", tmp_path / "w.state.pt", "--export", wide)
    assert code == 0, err
    state = read_state_dict(wide)
    assert architecture_of(state) == "rdopt-scc" and channels_from_state(state) == (24, 24)
    one_error_line(cli(*base, "--init", scc_checkpoint["scc"], "--out", tmp_path / "x.state.pt"),
                   "widens an rdopt-msh --init before it grows")
    assert not (tmp_path / "x.state.pt").exists()


def test_sga_encode_decode_info_and_the_stock_decoder(cli, png, scc_checkpoint, tmp_path):
    from rdopt.api.image import coded_latents
    from rdopt.codecs.image.loading import load_model
    from rdopt.coding.container import unpack

    ck = scc_checkpoint["scc"]
    src = png(64, 96)
    rdo, dec = tmp_path / "x.rdo", tmp_path / "x.png"
    code, out, err = cli("encode", src, "-o", rdo, "--checkpoint", ck, "--method", "sga", "--steps", "12", "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["model"] == "rdopt-scc-custom" and stats["rd_cost_estimated"] <= stats["rd_cost_amortized_estimated"]
    code, _, err = cli("decode", rdo, "-o", dec, "--checkpoint", ck)
    assert code == 0, err
    pixels = np.asarray(Image.open(dec))
    assert psnr(pixels, np.asarray(Image.open(src).convert("RGB"))) == pytest.approx(stats["psnr"], abs=1e-9)
    code, out, _ = cli("info", rdo, "--json")
    assert code == 0 and json.loads(out)["decode"]["order"] == "parallel context passes"
    # CompressAI's own decompress of the file's strings gives the decoded picture
    m = load_model(checkpoint=ck)
    f = unpack(rdo.read_bytes())
    coded = coded_latents(f, m)
    with torch.no_grad():
        stock = m.net.decompress(m.stock_strings(coded), m.stock_shape(*coded.shapes["y"][1:]))["x_hat"]
    stock_pixels = (stock[0, :, :64, :96].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(stock_pixels, pixels)


def test_roi_and_ms_ssim_encodes(cli, png, scc_checkpoint, tmp_path):
    ck = scc_checkpoint["scc"]
    src = png(64, 64)
    mask = tmp_path / "m.png"
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 16:48] = 255
    Image.fromarray(m).save(mask)
    for extra in (["--roi", mask], ["--distortion", "ms-ssim"]):
        rdo = tmp_path / f"{extra[0][2:]}.rdo"
        code, out, err = cli("encode", src, "-o", rdo, "--checkpoint", ck, "--steps", "4", "--json", *extra)
        assert code == 0, err
        assert cli("decode", rdo, "-o", tmp_path / f"{extra[0][2:]}.png", "--checkpoint", ck)[0] == 0


def test_an_elic_checkpoint_is_taken_for_its_architecture(cli, png, tmp_path):
    import rdopt.codecs  # noqa: F401 - CompressAI without its package __init__, as rdopt loads it
    from compressai.models import Elic2022Chandelier

    torch.manual_seed(0)
    net = Elic2022Chandelier(N=16, M=24, groups=[2, 2, 4, 8, 8]).eval()
    net.update(force=True)
    ck = tmp_path / "elic.pth.tar"
    torch.save({"state_dict": net.state_dict()}, ck)
    src = png(48, 64)
    rdo = tmp_path / "e.rdo"
    code, out, err = cli("encode", src, "-o", rdo, "--checkpoint", ck, "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "elic2022-chandelier"
    assert cli("decode", rdo, "-o", tmp_path / "e.png", "--checkpoint", ck)[0] == 0
    one_error_line(cli("decode", rdo, "-o", tmp_path / "f.png"), "pass its --checkpoint")


def test_training_with_mixed_quantization_resumes(cli, scc_checkpoint, tmp_path):
    """``--quantization mixed`` trains rdopt-scc (decoder values rounded straight through, noisy rate), records it
    with the state and resumes it; a resume with the other quantization is refused."""
    import json as _json

    data = scc_checkpoint["dir"] / "data"
    base = ["train", "--architecture", "rdopt-scc", "--init", scc_checkpoint["msh"], "--out", tmp_path / "m.pt",
            "--data", data, "--crop", "64", "--batch", "1", "--quality", "3", "--threads", "1"]
    code, out, err = cli(*base, "--steps", "1", "--quantization", "mixed")
    assert code == 0, err
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert _json.loads(state["config"])["quantization"] == "mixed"
    code, _, err = cli(*base, "--steps", "2", "--quantization", "mixed")
    assert code == 0, err
    code, _, err = cli(*base, "--steps", "3")
    assert code == 2 and "quantization" in err


def test_refusals(cli, png, scc_checkpoint, tmp_path):
    one_error_line(cli("encode", png(32, 32), "-o", tmp_path / "a.rdo", "--model", "rdopt-scc", "--quality", "7"),
                   "rdopt-scc has qualities 2-6")
    one_error_line(cli("encode", png(32, 32), "-o", tmp_path / "a.rdo", "--model", "elic2022-official"),
                   "CompressAI publishes no weights for elic2022-official")
    one_error_line(cli("encode", png(32, 32), "-o", tmp_path / "a.rdo", "--checkpoint", scc_checkpoint["scc"],
                       "--method", "sga-bb", "--steps", "2"), "holds rdopt-scc weights: lossy bits-back needs")
    data = scc_checkpoint["dir"] / "data"
    one_error_line(cli("train", "--architecture", "rdopt-scc", "--init", scc_checkpoint["msh"], "--objective", "iwae",
                       "--out", tmp_path / "s.pt", "--steps", "1", "--data", data, "--quality", "3"), "single-sample elbo")
    one_error_line(cli("train", "--init", scc_checkpoint["msh"], "--objective", "iwae", "--quantization", "mixed",
                       "--out", tmp_path / "s.pt", "--steps", "1", "--data", data, "--quality", "3"),
                   "--quantization mixed applies to the elbo")
    assert not (tmp_path / "a.rdo").exists() and not (tmp_path / "s.pt").exists()
