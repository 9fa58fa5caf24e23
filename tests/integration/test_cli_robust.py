"""CLI robustness, in-process: image metadata, argument checks, help, model loading, tiled decoding."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, pattern_image, one_error_line


def encode(cli, src, out, *extra):
    return cli("encode", src, "-o", out, "--checkpoint", GOLDEN / "tiny.pt", *extra)


def test_exif_orientation_is_applied(cli, tmp_path):
    a = pattern_image(16, 32)  # stored 32 wide, 16 high; orientation 6 = rotate 90° clockwise to display
    exif = Image.Exif()
    exif[0x0112] = 6
    src = tmp_path / "rot.jpg"
    Image.fromarray(a).save(src, exif=exif.tobytes(), quality=95)
    rdo, dec = tmp_path / "r.rdo", tmp_path / "r.png"
    code, _, err = encode(cli, src, rdo)
    assert code == 0, err
    assert "EXIF orientation 6 applied" in err
    assert cli("decode", rdo, "-o", dec, "--checkpoint", GOLDEN / "tiny.pt")[0] == 0
    assert Image.open(dec).size == (16, 32)  # displayed upright: 16 wide, 32 high


def test_icc_profile_and_animation_are_noted(cli, tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.fromarray(pattern_image(16, 16)).save(src, icc_profile=icc)
    code, _, err = encode(cli, src, tmp_path / "i.rdo")
    assert code == 0 and "ICC colour profile" in err and "not applied or kept" in err
    frames = [Image.fromarray(pattern_image(16, 16, seed=s)) for s in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    code, _, err = encode(cli, gif, tmp_path / "g.rdo")
    assert code == 0 and "3 frames; only the first is coded" in err


def test_steps_without_an_optimizing_method_is_an_error(cli, png, tmp_path):
    out = tmp_path / "x.rdo"
    one_error_line(encode(cli, png(16, 16), out, "--steps", "50"), "--steps only applies to an optimization method")
    one_error_line(encode(cli, png(16, 16), out, "--lmbda", "0.01"), "--lmbda needs an optimization --method")
    assert not out.exists()


def test_lmbda_any_value_with_the_nearest_quality(cli, png, tmp_path):
    from rdopt.cli.common import resolve_quality
    from rdopt.cli.main import build_parser

    args = build_parser(["encode"]).parse_args(["encode", "x.png", "-o", "y.rdo", "--method", "sga", "--lmbda", "0.02"])
    assert resolve_quality(args) == 5  # λ 0.025 is nearest to 0.02 in log λ (q4: 0.013)
    args = build_parser(["encode"]).parse_args(["encode", "x.png", "-o", "y.rdo"])
    assert resolve_quality(args) == 3
    rdo = tmp_path / "l.rdo"
    code, out, err = encode(cli, png(24, 24), rdo, "--method", "sga", "--steps", "3", "--lmbda", "0.0213", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(out)["lmbda"] == 0.0213
    assert cli("decode", rdo, "-o", tmp_path / "l.png", "--checkpoint", GOLDEN / "tiny.pt")[0] == 0


def test_threads_option(cli, png, tmp_path):
    old = torch.get_num_threads()
    try:
        assert encode(cli, png(16, 16), tmp_path / "t.rdo", "--threads", "1")[0] == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


def test_help_explains_every_option_with_its_default():
    import argparse

    from rdopt.cli.main import SUBCOMMANDS, build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in SUBCOMMANDS:
        p = subs.choices[name]
        parsers = [p]
        for a in p._actions:  # eval has a nested level
            if isinstance(a, argparse._SubParsersAction):
                parsers += list(a.choices.values())
        for sp in parsers:
            text = sp.format_help()
            for a in sp._actions:
                if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                assert a.help, f"{name}: {a.option_strings or a.dest} has no help"
                if a.option_strings and a.default not in (None, False):
                    shown = sp._get_formatter()._get_help_string(a)
                    assert "default" in shown, f"{name}: {a.option_strings} does not show its default"
            assert "%(" not in text
    enc = subs.choices["encode"].format_help()
    assert "(default 3" in enc.replace("\n", " ") or "default 3" in " ".join(enc.split())


def test_decode_to_a_directory_names_the_problem(cli, tmp_path):
    one_error_line(cli("decode", GOLDEN / "tiny.rdo", "-o", tmp_path), "output is a directory")
    one_error_line(cli("decode", GOLDEN / "tiny.rdo", "-o", tmp_path / "noext"), "has no extension")


def test_read_only_directory_is_refused_before_any_work(cli, png, tmp_path, monkeypatch):
    import tempfile

    import rdopt.api.image

    src = png(16, 16)

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(rdopt.api.image, "encode_images", lambda *a, **k: pytest.fail("encoding started"))
    one_error_line(encode(cli, src, tmp_path / "x.rdo", "--method", "sga", "--steps", "10"),
                   "cannot write to directory")
    one_error_line(cli("decode", GOLDEN / "tiny.rdo", "-o", tmp_path / "x.png"), "Read-only file system")


def test_encode_loads_only_the_weights_of_the_chosen_quality(cli, png, tmp_path, monkeypatch):
    from rdopt.codecs.image import loading as registry

    read = []
    real = registry.read_state_dict
    monkeypatch.setattr(registry, "read_state_dict", lambda p: read.append(str(p)) or real(p))
    code, _, err = cli("encode", png(16, 16), "-o", tmp_path / "q.rdo", "--quality", "4")
    assert code == 0, err
    assert [p.rsplit("/", 1)[-1] for p in read] == ["rdopt-scc-q4.pt"]  # the default model's


def test_tiled_synthesis_equals_one_pass(tiny_model):
    from rdopt.codecs.image import tiled

    torch.manual_seed(0)
    y = torch.round(torch.randn(1, 16, 5, 7) * 3)
    one = tiled.synthesize_uint8(tiny_model, y, 5 * 16 - 3, 7 * 16 - 9)
    old = tiled.TILE
    try:
        tiled.TILE = 2  # force tiles (with their halo) on a small latent
        many = tiled.synthesize_uint8(tiny_model, y, 5 * 16 - 3, 7 * 16 - 9)
    finally:
        tiled.TILE = old
    assert one.shape == many.shape == (77, 103, 3)
    assert np.abs(one.astype(int) - many.astype(int)).max() <= 1 and (one != many).mean() < 1e-3


def test_memory_budget_reads_limits_and_environment(monkeypatch):
    from rdopt.data import safeio

    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "1.5G")
    assert safeio.memory_budget() == int(1.5 * 2**30)
    with pytest.raises(safeio.MemoryBudgetError, match="needs about 2.0 GB"):
        safeio.check_memory(2 << 30, "x")
    monkeypatch.setenv("RDOPT_MEMORY_LIMIT", "lots")
    with pytest.raises(safeio.MemoryBudgetError, match="not a size"):
        safeio.memory_budget()
    monkeypatch.delenv("RDOPT_MEMORY_LIMIT")
    assert safeio.memory_budget() > 0


def test_payload_plausibility_check():
    from rdopt.coding.container import (BitstreamError, Frame, Header, RdoFile, Stream, check_payload_plausible,
                                        check_streams_plausible)

    h = Header("m-q3", b"\0" * 8, 16384, 16384)
    f = RdoFile(h, [Frame("I", [Stream("y", "latent", b"x" * 100), Stream("z", "hyper", b"y" * 10)])])
    with pytest.raises(BitstreamError, match="header's size does not match"):
        check_payload_plausible(f, [192 * 1024 * 1024, 64 * 256 * 256], [6.6e-5, 6.6e-5])
    check_payload_plausible(f, [1000, 100], [0.1, 0.1])  # 100 bits: fine
    with pytest.raises(BitstreamError, match="stream 'y' has 100 bytes"):  # by name (what decoding uses)
        check_streams_plausible(h, f.strings, [192 * 1024 * 1024, 100], [6.6e-5, 0.1], ["y", "z"])
    with pytest.raises(BitstreamError, match="2 strings, the model codes 3"):
        check_payload_plausible(f, [1, 1, 1], [0.1, 0.1, 0.1])
