import json

import pytest
import torch

from rdopt.codecs.image import loading as registry
from rdopt.codecs.image.loading import ModelUnavailable, load_model, read_state_dict


def test_zoo_weights_missing_is_a_clear_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailable, match="weights not available offline: put mbt2018-mean-3-723404a8.pth.tar at"):
        load_model("mbt2018-mean", 3)


def test_zoo_weights_in_the_hub_cache_are_used(tmp_path, monkeypatch):
    """A zoo file in the cache is loaded like CompressAI loads it (tables computed by update())."""
    from compressai.models import ScaleHyperprior

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setitem(registry.ZOO_CHANNELS["bmshj2018-hyperprior"], 1, (16, 16))
    torch.manual_seed(0)
    net = ScaleHyperprior(16, 16)
    path = registry.zoo_cache_path("bmshj2018-hyperprior", 1)
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    model = load_model("bmshj2018-hyperprior", 1)
    assert model.model_id == "bmshj2018-hyperprior-q1"
    assert model.lmbda == registry.COMPRESSAI_LAMBDAS[1]
    assert len(model.net.gaussian_conditional.scale_table) == 64  # CompressAI's default table
    x = torch.rand(1, 3, 64, 64)
    assert list(model.compress(model.amortize(x)).streams.values()) == model.net.compress(x)["strings"]


def test_checkpoint_formats(tmp_path, tiny_checkpoint):
    state = read_state_dict(tiny_checkpoint)
    wrapped = tmp_path / "wrapped.pth.tar"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    assert read_state_dict(wrapped).keys() == state.keys()
    with pytest.raises(ModelUnavailable, match="checkpoint not found"):
        read_state_dict(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable, match="cannot read checkpoint"):
        read_state_dict(junk)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, p)
    with pytest.raises(ModelUnavailable):
        read_state_dict(p)
    assert not (tmp_path / "pwned").exists()


def test_unknown_names_and_qualities():
    with pytest.raises(ModelUnavailable, match="unknown model"):
        load_model("nope", 3)
    with pytest.raises(ModelUnavailable, match="qualities 2-6"):
        load_model("rdopt-msh", 8)


def test_saved_embedded_weights_reload_identically(tmp_path, tiny_checkpoint, tiny_model):
    """Shipping form: float16 parameters, exact tables; loading gives the model the tables were made for."""
    state = torch.load(tiny_checkpoint, weights_only=True)
    assert state["g_a.0.weight"].dtype == torch.float16
    assert state["gaussian_conditional._quantized_cdf"].dtype == torch.int32
    again = load_model("rdopt-msh", 3, checkpoint=tiny_checkpoint)
    assert again.weight_hash() == tiny_model.weight_hash()
    # recomputing the tables from the loaded (rounded) weights reproduces the stored ones exactly
    eb = again.net.entropy_bottleneck
    stored = eb._quantized_cdf.clone()
    eb.update(force=True)
    assert torch.equal(stored, eb._quantized_cdf)


def test_unsafe_checkpoint_error_never_advises_unsafe_loading(tmp_path):
    """The error for a checkpoint holding objects names the problem, without PyTorch's advice
    to load with weights_only=False."""
    import fractions

    p = tmp_path / "objects.pt"
    torch.save({"state_dict": {"w": fractions.Fraction(1, 3)}}, p)
    with pytest.raises(ModelUnavailable) as e:
        read_state_dict(p)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
    assert "objects other than tensors" in str(e.value)


def test_quality_choice_is_the_nearest_registered_lambda_in_log_lambda():
    from rdopt.codecs.registry import COMPRESSAI_LAMBDAS, choose_quality

    assert choose_quality("rdopt-msh", quality=5, lmbda=0.0018) == 5  # a given quality wins
    assert choose_quality("rdopt-msh") == 3 and choose_quality("rdopt-video2") == 2  # the codec's default
    assert choose_quality("rdopt-msh", lmbda=0.013) == 4
    assert choose_quality("rdopt-msh", lmbda=0.0018) == 2  # the embedded model ships qualities 2-6 only
    assert choose_quality("rdopt-msh", lmbda=0.0018, checkpoint="c.pt") == 1  # a checkpoint may be any quality
    assert choose_quality("rdopt-video2", lmbda=0.02) == 3  # log-nearest: 0.025 rather than 0.013
    for q, lm in COMPRESSAI_LAMBDAS.items():
        assert choose_quality("mbt2018-mean", lmbda=lm * 1.2) == q


def test_a_video_encode_without_a_codec_takes_the_checkpoints_family(tmp_path, capsys):
    """No ``--codec``: the embedded family whose P-frame weights file the checkpoint is, else the default codec."""
    from rdopt.codecs.registry import DEFAULT_VIDEO_CODEC, video_codec_for
    from rdopt.codecs.video.video2 import ConditionalResidualCoder, MotionCoder, Video2PFrameCodec

    from video_fixtures import tiny_video_checkpoint

    assert DEFAULT_VIDEO_CODEC == "rdopt-video2" and video_codec_for(None) == DEFAULT_VIDEO_CODEC
    assert video_codec_for(tiny_video_checkpoint(tmp_path / "dvc.pt")) == "rdopt-video"
    Video2PFrameCodec(MotionCoder(channels=8, latent=4, hyper=4), ConditionalResidualCoder(8, 8, 4)).save_shipped(
        tmp_path / "v2.pt")
    assert video_codec_for(tmp_path / "v2.pt") == "rdopt-video2"
    state = {"model": {}, "step": 10, "config": json.dumps({"video": True, "architecture": "rdopt-msh", "lmbda": 0.01})}
    torch.save(state, tmp_path / "dvc.state.pt")  # a training state of `rdopt train --video`
    assert video_codec_for(tmp_path / "dvc.state.pt") == "rdopt-video"
    torch.save({**state, "config": json.dumps({"video": True, "architecture": "rdopt-video2"})}, tmp_path / "v2.state.pt")
    assert video_codec_for(tmp_path / "v2.state.pt") == "rdopt-video2"
    with pytest.raises(ValueError, match="different codecs"):
        video_codec_for(tmp_path / "dvc.pt", None, tmp_path / "v2.pt")
    assert video_codec_for(tmp_path / "v2.pt", tmp_path / "v2.state.pt", None) == "rdopt-video2"
    # an evaluation refuses checkpoints of two codecs before it runs anything
    from rdopt.cli.main import main

    rc = main(["eval", "video", "carphone", "--checkpoint", f"1={tmp_path / 'dvc.pt'}", "--checkpoint",
               f"2={tmp_path / 'v2.pt'}", "--qualities", "1,2", "--out", str(tmp_path / "r.json")])
    assert rc != 0 and not (tmp_path / "r.json.units").exists()
    assert "different codecs" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert video_codec_for(tmp_path / "junk.pt") == DEFAULT_VIDEO_CODEC  # its loader names the problem
    assert video_codec_for(tmp_path / "missing.pt") == DEFAULT_VIDEO_CODEC
