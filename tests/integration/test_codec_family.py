"""Any codec through the registry, the CLI and the .rdov container: a P-frame codec written in a test file (not in
src/) reached through ``--codec FILE.py:FACTORY`` and through the ``rdopt.codecs`` entry-point group, encoded with
a bit-allocation method, decoded in a fresh process to exactly the frames the encoder reported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import one_error_line
from rdopt.metrics.quality import psnr
from video_fixtures import moving_clip

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
SPEC = f"{TESTS / 'user_codec.py'}:make_codec"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from rdopt.data.video import read_frames, write_video

    d = tmp_path_factory.mktemp("family")
    path = d / "clip.y4m"
    write_video(path, moving_clip(4, 64, 64))
    return path, read_frames(path)


def _plugin_env(tmp_path: Path) -> dict:
    """An environment whose Python sees a distribution declaring the test codec in the rdopt.codecs group."""
    site = tmp_path / "site"
    dist = site / "toy_translate-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-translate\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rdopt.codecs]\ntoy-translate = user_codec:entry\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS), str(site)]), OMP_NUM_THREADS="1")


def _run(args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rdopt", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def _decoded_equal_reported(frames_dir: Path, source, report: dict) -> None:
    files = sorted(frames_dir.iterdir())
    assert len(files) == report["frames"]
    for i, p in enumerate(files):
        got = np.asarray(Image.open(p))
        assert psnr(got, source[i]) == pytest.approx(report["frame_stats"][i]["psnr"], abs=1e-6)


def test_a_codec_from_a_file_encodes_with_sequential_savi_and_decodes_in_a_fresh_process(cli, clip, tmp_path):
    path, source = clip
    out = tmp_path / "c.rdov"
    code, text, err = cli("encode", path, "-o", out, "--codec", SPEC, "--method", "sequential", "--gop", "2",
                          "--steps-i", "4", "--steps-p", "2", "--json")
    assert code == 0, err
    report = json.loads(text)
    assert report["model"] == "toy-translate-q1" and report["frames"] == 4 and report["method"] == "sequential"
    code, text, _ = cli("info", out, "--json")
    names = set(json.loads(text)["frame_table"][1]["streams"])
    # the codec's own latent names, in the file (a P-frame skipped whole has its motion and skip streams only)
    assert {"mv_1", "mv_h_1"} <= names <= {"mv_1", "mv_h_1", "res_1", "res_h_1", "skip_1"}
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    r = _run(["decode", out, "-o", tmp_path / "dec", "--codec", SPEC], env)
    assert r.returncode == 0, r.stderr
    _decoded_equal_reported(tmp_path / "dec", source, report)
    # without the codec the decoder says exactly what to pass
    r = _run(["decode", out, "-o", tmp_path / "dec2"], env)
    assert r.returncode == 2 and "toy-translate-q1" in r.stderr and "--codec FILE.py:FACTORY" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "dec2").exists()


def test_a_codec_registered_by_an_entry_point_needs_no_flag(clip, tmp_path):
    path, source = clip
    env = _plugin_env(tmp_path)
    out = tmp_path / "e.rdov"
    r = _run(["encode", path, "-o", out, "--codec", "toy-translate", "--method", "bao", "--gop", "4", "--steps-i", "3",
              "--json"], env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    r = _run(["decode", out, "-o", tmp_path / "dec"], env)  # found from the model id through the entry point
    assert r.returncode == 0, r.stderr
    _decoded_equal_reported(tmp_path / "dec", source, report)


def test_registry_lists_and_loads_by_name(tmp_path, monkeypatch):
    from rdopt.codecs import registry

    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _plugin_env(tmp_path)
    import importlib

    importlib.invalidate_caches()
    known = registry.entries()
    assert {"rdopt-msh", "rdopt-video", "rdopt-video2", "ssf2020", "toy-translate"} <= set(known)
    codec = registry.load_codec("toy-translate")
    assert codec.model_id == "toy-translate-q1" and registry.get("toy-translate").kind == "video"
    assert registry.parse_model_id("toy-translate-q1") == ("toy-translate", 1)
    again = registry.codec_for_model_id("toy-translate-q1")
    assert again.weight_hash() == codec.weight_hash()
    with pytest.raises(registry.ModelUnavailable, match="unknown codec 'nope'"):
        registry.load_codec("nope")
    with pytest.raises(registry.ModelUnavailable, match="own weights"):
        registry.codec_for_model_id("rdopt-video-custom")
    with pytest.raises(registry.ModelUnavailable, match="not NAME-qQ"):
        registry.parse_model_id("garbage")


def test_codec_errors_are_one_line(cli, clip, tmp_path):
    path, _ = clip
    out = tmp_path / "x.rdov"
    one_error_line(cli("encode", path, "-o", out, "--codec", "nope"), "unknown codec")
    one_error_line(cli("encode", path, "-o", out, "--codec", "rdopt-msh"), "image codec")
    one_error_line(cli("encode", path, "-o", out, "--codec", f"{tmp_path / 'absent.py'}:f"), "no such file")
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    one_error_line(cli("encode", path, "-o", out, "--codec", f"{bad}:f"), "importing")
    one_error_line(cli("encode", path, "-o", out, "--codec", "rdopt-video", "--quality", "5"), "--quality 1-4")
    assert not out.exists()


def test_lmbda_moves_the_rate_of_an_optimized_video_encode(cli, clip, tmp_path):
    path, _ = clip
    sizes = []
    for lm in ("0.002", "0.05"):
        code, text, err = cli("encode", path, "-o", tmp_path / f"l{lm}.rdov", "--codec", SPEC, "--method", "sequential",
                              "--gop", "2", "--frames", "2", "--steps-i", "30", "--steps-p", "10", "--lr", "0.05",
                              "--lmbda", lm, "--json")
        assert code == 0, err
        sizes.append(json.loads(text)["file_bytes"])
    assert sizes[0] <= sizes[1]
    one_error_line(cli("encode", path, "-o", tmp_path / "a.rdov", "--lmbda", "0.01"), "--lmbda needs an optimization --method")


def test_ssf2020_from_a_checkpoint_through_the_cli(cli, clip, tmp_path):
    """CompressAI's ssf2020, a user's checkpoint: encoded with sequential SAVI, decoded in a fresh process to the
    reported frames; its amortized streams are those of ScaleSpaceFlow.compress (tests/unit/test_ssf.py)."""
    import torch
    from compressai.models.video import ScaleSpaceFlow

    path, source = clip
    torch.manual_seed(0)
    net = ScaleSpaceFlow().eval()
    net.update(force=True)
    ckpt = tmp_path / "ssf.pth.tar"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    out = tmp_path / "s.rdov"
    code, text, err = cli("encode", path, "-o", out, "--codec", "ssf2020", "--checkpoint", ckpt, "--method",
                          "sequential", "--gop", "2", "--frames", "2", "--steps-i", "2", "--steps-p", "1", "--json")
    assert code == 0, err
    report = json.loads(text)
    assert report["model"] == "ssf2020-custom" and report["frames"] == 2
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    r = _run(["decode", out, "-o", tmp_path / "dec", "--checkpoint", ckpt], env)
    assert r.returncode == 0, r.stderr
    _decoded_equal_reported(tmp_path / "dec", source, report)
