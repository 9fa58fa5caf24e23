"""Skip mode end to end: whole-frame skips on a static clip, block skips on the static background of a moving object,
the encoder's estimated GoP cost, every allocation method, rate control, grayscale clips, Ctrl-C, old files, corrupt
skip streams and ``rdopt info``.

Two codecs: the tiny random-weight ``rdopt-video`` checkpoint of the other video tests, and a hand-made codec whose
behaviour is known (``video_fixtures.blockmean_video_codec``: zero motion, a residual of 4×4 block means; its
background costs residual bits for noise, its moving object is corrected)."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rdopt
from conftest import GOLDEN, assert_decodes_as_recorded, one_error_line, run_rdopt
from video_fixtures import (blockmean_video_codec, moving_clip, object_clip, smooth_background, tiny_clip_and_checkpoint,
                            tiny_video_codec)

SRC = str(Path(rdopt.__file__).resolve().parents[1])
SPEC = f"{Path(__file__).resolve().parents[1] / 'video_fixtures.py'}:blockmean_video_codec"
H, W = 64, 96


@pytest.fixture(autouse=True)
def one_thread():
    """Encoder and decoder (here and in fresh processes) on one thread: their float sums then agree bit for bit."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def bm():
    return blockmean_video_codec()


def png_frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def encode(codec, frames, out, **kw):
    """``encode_video`` with the frames it reports (what ``rdopt decode`` must write)."""
    from rdopt.api.video import encode_video

    got = {}
    stats = encode_video(codec, frames, out, progress=False, on_frame=lambda i, rgb: got.__setitem__(i, rgb), **kw)
    return stats, [got[i] for i in range(len(got))]


def skips_in(codec, path: Path, h=H, w=W):
    """Each frame's skip as the file says (``rdopt.api.video.read_skips``)."""
    from rdopt.api.video import read_skips
    from rdopt.coding.rdov import unpack_video

    header, gops = unpack_video(path.read_bytes())
    pad = codec.padding_of(header.tight_padding)
    return [s for g in gops for s in read_skips(codec.gop(len(g.frames)), g.frames, h, w, pad)]


# ---------------------------------------------------------------------------------------- static clip
@pytest.mark.parametrize("which", ["blockmean", "tiny-checkpoint"])
def test_static_clip_skips_whole_frames_and_decodes_in_a_fresh_process(which, bm, cli, tmp_path):
    from rdopt.api.video import load_video_codec
    from rdopt.data.video import write_video

    if which == "blockmean":
        codec, frames, args = bm, [smooth_background(H, W)] * 4, ["--codec", SPEC]
    else:
        ckpt, _ = tiny_clip_and_checkpoint(tmp_path)
        codec, frames, args = load_video_codec(checkpoint=ckpt), [moving_clip(1, H, W)[0]] * 4, ["--checkpoint", ckpt]
    clip = tmp_path / "static.y4m"
    write_video(clip, frames)
    stats, reported = encode(codec, clip, tmp_path / "skip.rdov", gop=4)
    plain, _ = encode(codec, clip, tmp_path / "plain.rdov", gop=4, skip=False)
    assert [f.skip for f in stats.frame_stats] == [None, "frame", "frame", "frame"]
    assert [f.skip_blocks for f in stats.frame_stats] == [0, 32, 32, 32] and stats.skipped_frames == 3
    assert all(f.skip is None for f in plain.frame_stats) and plain.skipped_frames == 0 and not plain.skip_mode
    assert stats.file_bytes < plain.file_bytes
    for f in stats.frame_stats[1:]:  # motion and the skip stream only
        assert sorted(f.stream_bytes) == sorted([f"w_{f.index}", f"z_w_{f.index}", f"skip_{f.index}"])
        assert f.stream_bytes[f"skip_{f.index}"] == 1 and f.bits_estimated_per_latent[f"skip_{f.index}"] == 8.0
    # a fresh process decodes the very frames the encoder reported
    out = tmp_path / "frames"
    run_rdopt("decode", tmp_path / "skip.rdov", "-o", out, *args, "--threads", "1")
    decoded = png_frames(out)
    assert len(decoded) == 4 and all(np.array_equal(a, b) for a, b in zip(decoded, reported))
    from rdopt.data.video import read_frames
    from rdopt.metrics.quality import psnr

    source = read_frames(clip)  # the frames as the encoder read them (from Y4M)
    assert [psnr(d, s) for d, s in zip(decoded, source)] == pytest.approx([f.psnr for f in stats.frame_stats], abs=1e-9)
    # the command line: skip by default, --no-skip off; the same files as the library writes
    code, text, err = cli("encode", clip, "-o", tmp_path / "cli.rdov", "--gop", "4", *args, "--json")
    assert code == 0, err
    doc = json.loads(text)
    assert (tmp_path / "cli.rdov").read_bytes() == (tmp_path / "skip.rdov").read_bytes()
    assert [f["skip"] for f in doc["frame_stats"]] == [None, "frame", "frame", "frame"] and doc["skipped_frames"] == 3
    code, text, err = cli("encode", clip, "-o", tmp_path / "cli-plain.rdov", "--gop", "4", *args, "--no-skip", "--json")
    assert code == 0, err
    assert (tmp_path / "cli-plain.rdov").read_bytes() == (tmp_path / "plain.rdov").read_bytes()
    assert json.loads(text)["skip_mode"] is False
    code, text, err = cli("encode", clip, "-o", tmp_path / "text.rdov", "--gop", "4", *args, "--quiet")
    assert code == 0, err
    assert "3 P-frames skipped whole" in text and [line.split()[-1] for line in text.splitlines()
                                                   if line.split()[:3] == ["2", "0", "P"]] == ["frame"], text


def test_no_skip_is_a_video_option(cli, tmp_path, png):
    one_error_line(cli("encode", png, "-o", tmp_path / "x.rdo", "--no-skip"), "--no-skip apply to video inputs")


# ---------------------------------------------------------------------------------------- moving object
def test_moving_object_skips_the_background_blocks(bm, tmp_path):
    from rdopt.api.video import decode_video_frames

    frames, where = object_clip(4, H, W)
    stats, reported = encode(bm, frames, tmp_path / "o.rdov", gop=4)
    plain, _ = encode(bm, frames, tmp_path / "p.rdov", gop=4, skip=False)
    assert [f.skip for f in stats.frame_stats] == [None, "blocks", "blocks", "blocks"]
    assert stats.file_bytes < 0.8 * plain.file_bytes and stats.psnr > plain.psnr - 0.5
    skips = skips_in(bm, tmp_path / "o.rdov")
    for t in range(1, 4):
        mask = skips[t].mask
        assert mask.shape == (4, 8) and stats.frame_stats[t].skip_blocks == int(mask.sum())
        (y0, x0), (y1, x1) = where[t - 1], where[t]
        for r in range(4):
            for c in range(8):
                touches = any(r * 16 < y + 20 and y < r * 16 + 16 and c * 16 < x + 20 and x < c * 16 + 16
                              for y, x in ((y0, x0), (y1, x1)))
                if not touches:
                    assert mask[r, c], (t, r, c)  # the background (and the padding beyond the visible 96 columns)
        cy, cx = y1 + 10, x1 + 10
        assert not mask[cy // 16, cx // 16]  # the block at the object's centre is coded
    assert all(np.array_equal(a, b) for a, b in zip(decode_video_frames((tmp_path / "o.rdov").read_bytes(), codec=bm),
                                                    reported))


# ---------------------------------------------------------------------------------------- the estimated cost
def _estimated_cost(stats, lmbda: float) -> float:
    """The encoder's estimated cost of a clip from its report: per frame, the entropy model's bits of its
    streams (skip streams: their payload) and their headers in the file, over the visible pixels, plus
    λ·255²·MSE (λ·MSE on the 8-bit scale)."""
    from rdopt.codecs.video.skip import stream_header_bits

    npix = stats.width * stats.height
    total = 0.0
    for f in stats.frame_stats:
        est = f.bits_estimated_per_latent
        heads = sum(stream_header_bits(n, est[n] / 8.0) for n in est)
        total += (f.bits_estimated + heads) / npix + lmbda * f.mse
    return total


class Once:
    """An allocate hook that allocates each GoP once; after :meth:`replay` it hands out the same latents again."""

    def __init__(self, inner):
        self.inner, self.memo, self.replaying, self.i = inner, [], False, 0

    def replay(self) -> None:
        self.replaying, self.i = True, 0

    def __call__(self, gop_codec, x, height, width):
        if self.replaying:
            self.i += 1
            return self.memo[self.i - 1]
        self.memo.append(self.inner(gop_codec, x, height, width))
        return self.memo[-1]


@pytest.mark.parametrize("case", ["blockmean-object", "blockmean-static", "tiny-moving", "tiny-sequential"])
def test_skip_never_raises_the_estimated_gop_cost(case, bm, tmp_path):
    from rdopt.api.video import amortized
    from rdopt.codecs.video.skip import choose_skips
    from rdopt.data.images import to_batch
    from rdopt.infer.allocation import make_allocator
    from rdopt.infer.options import SolverOptions

    if case.startswith("blockmean"):
        codec = bm
        frames = object_clip(4, H, W)[0] if case.endswith("object") else [smooth_background(H, W)] * 4
    else:
        codec, frames = tiny_video_codec(), moving_clip(4, H, W)
    inner = amortized if not case.endswith("sequential") else make_allocator(
        SolverOptions(solver="sequential", steps=3, steps_p=2, lr=1e-2), None)
    hook = Once(inner)
    stats, _ = encode(codec, frames, tmp_path / "s.rdov", gop=4, allocate=hook)
    hook.replay()
    plain, _ = encode(codec, frames, tmp_path / "p.rdov", gop=4, allocate=hook, skip=False)
    with_skip, without = _estimated_cost(stats, codec.lmbda), _estimated_cost(plain, codec.lmbda)
    assert with_skip <= without + 1e-9
    # the encoder's own accounting is that of the report
    g = codec.gop(4)
    x = to_batch(frames, codec.pad_multiple, "cpu", torch.float32)[None]
    choice = choose_skips(g, x, hook.memo[0], H, W, codec.lmbda)
    assert choice.cost <= choice.cost_without
    assert choice.cost == pytest.approx(with_skip, rel=2e-3) and choice.cost_without == pytest.approx(without, rel=2e-3)
    if case != "tiny-sequential":  # each of these clips has something to skip
        assert choice.any and with_skip < without


def test_a_gop_keeps_no_skip_when_its_skips_would_cost_more(bm, monkeypatch):
    """Skips are chosen frame by frame, each looking one frame ahead; if later frames, whose latents were chosen
    for references without skips, then cost more than the skips saved, the GoP keeps none. Here frame 1 is offered
    a skip that reconstructs a black frame, 1 bit cheaper than its other choices, and the look-ahead is fooled."""
    from rdopt.api.video import amortized
    from rdopt.codecs.video import skip as S
    from rdopt.coding.skip import FrameSkip
    from rdopt.data.images import to_batch

    frames = object_clip(4, H, W)[0]
    g = bm.gop(4)
    x = to_batch(frames, 64, "cpu", torch.float32)[None]
    lat = amortized(g, x, H, W)
    real_options, real_plain, fake = S._options, S._Evaluator.plain, {}

    def options(ev, t, ref, frame_skip):
        out = real_options(ev, t, ref, frame_skip)
        if t == 1:
            fake.update(black=torch.zeros_like(out[0].x_hat), plain=out[0].x_hat)
            out = out + [S._Option(min(o.cost for o in out) - 1.0, fake["black"], FrameSkip("frame"))]
        return out

    def plain(self, t, ref):
        return real_plain(self, t, fake["plain"] if ref is fake.get("black") else ref)

    monkeypatch.setattr(S, "_options", options)
    monkeypatch.setattr(S._Evaluator, "plain", plain)
    choice = S.choose_skips(g, x, lat, H, W, bm.lmbda)
    assert not choice.any and choice.cost == choice.cost_without and choice.latents is lat
    monkeypatch.setattr(S._Evaluator, "plain", real_plain)  # an honest look-ahead refuses the black frame
    honest = S.choose_skips(g, x, lat, H, W, bm.lmbda)
    assert honest.skips[1] is None or honest.skips[1].mode == "blocks"


# ---------------------------------------------------------------------------------------- methods, rate, gray, Ctrl-C
@pytest.mark.parametrize("method", ["sequential", "windowed", "bao", "exact", "oeu", "oeu-sequential", "lambda-domain"])
def test_every_allocation_method_codes_skips(method, tmp_path):
    from rdopt.api.video import decode_video_frames
    from rdopt.infer.options import SolverOptions

    codec = tiny_video_codec()
    opts = SolverOptions(solver=method, steps=2, steps_p=2, exact_steps=1, oeu_steps=2, lr=1e-2)
    frames = moving_clip(3, H, W)
    gop = 2 if method == "exact" else 3
    stats, reported = encode(codec, frames, tmp_path / "m.rdov", gop=gop, options=opts)
    assert stats.method == method and stats.skipped_frames + stats.skipped_blocks > 0
    decoded = decode_video_frames((tmp_path / "m.rdov").read_bytes(), codec=codec)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, reported))


def test_rate_control_measures_the_chunks_skip_mode_writes(tmp_path):
    from rdopt.api.video import encode_video
    from rdopt.infer.options import SolverOptions
    from rdopt.ratecontrol.video import VideoRateController, VideoRateOptions

    codec = tiny_video_codec()
    frames = moving_clip(6, H, W)
    ctl = VideoRateController(SolverOptions(solver="sequential", steps=2, steps_p=2), VideoRateOptions(kbps=30, fps=25))
    stats = encode_video(codec, frames, tmp_path / "r.rdov", gop=3, allocate=ctl, progress=False)
    assert stats.skipped_frames + stats.skipped_blocks > 0
    assert [r.bytes for r in ctl.records] == [g.chunk_bytes for g in stats.gops]  # measured = written
    assert ctl.gop_lmbda == ctl.records[-1].lmbda
    off = VideoRateController(SolverOptions(solver="sequential", steps=2, steps_p=2), VideoRateOptions(kbps=30, fps=25),
                              skip=False)
    with pytest.raises(ValueError, match="skip=False, the encode has skip=True"):
        encode_video(codec, frames, tmp_path / "x.rdov", gop=3, allocate=off, progress=False)
    plain = encode_video(codec, frames, tmp_path / "y.rdov", gop=3, allocate=off, progress=False, skip=False)
    assert [r.bytes for r in off.records] == [g.chunk_bytes for g in plain.gops] and plain.skipped_frames == 0


def test_grayscale_clip_with_skips(bm, tmp_path):
    from rdopt.api.video import decode_video
    from rdopt.data.video import gray_frame

    g = smooth_background(H, W)[..., 1]
    frames = [np.repeat(g[..., None], 3, axis=2)] * 3
    stats, reported = encode(bm, frames, tmp_path / "g.rdov", gop=3)
    assert stats.grayscale and stats.skipped_frames == 2
    dv = decode_video(str(tmp_path / "g.rdov"), codec=bm)
    out = list(dv.output_frames())
    assert all(np.array_equal(o, gray_frame(r)) for o, r in zip(out, reported))
    from rdopt.metrics.quality import psnr

    assert [psnr(o, g) for o in out] == pytest.approx([f.psnr for f in stats.frame_stats], abs=1e-9)


def test_ctrl_c_during_skip_decisions_keeps_the_finished_gops(bm, tmp_path, monkeypatch):
    import rdopt.api.video as V
    from rdopt.api.video import EncodeInterrupted, decode_video_frames

    real, calls = V.choose_skips, []

    def interrupting(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(V, "choose_skips", interrupting)
    frames = object_clip(6, H, W)[0]
    with pytest.raises(EncodeInterrupted) as e:
        encode(bm, frames, tmp_path / "c.rdov", gop=3)
    s = e.value.stats
    assert s.interrupted and s.frames == 3 and s.file_bytes == (tmp_path / "c.rdov").stat().st_size
    assert [f.skip for f in s.frame_stats] == [None, "blocks", "blocks"]
    monkeypatch.setattr(V, "choose_skips", real)
    full, reported = encode(bm, frames[:3], tmp_path / "f.rdov", gop=3)
    assert (tmp_path / "f.rdov").read_bytes() == (tmp_path / "c.rdov").read_bytes()
    decoded = decode_video_frames((tmp_path / "c.rdov").read_bytes(), codec=bm)
    assert len(decoded) == 3 and all(np.array_equal(a, b) for a, b in zip(decoded, reported))


# ---------------------------------------------------------------------------------------- old files
@pytest.mark.parametrize("name", ["tiny_colour.rdov", "tiny_gray_noflag.rdov"])
def test_files_from_before_skip_mode_decode_unchanged(name):
    from rdopt.api.video import decode_video_frames, load_video_codec

    codec = load_video_codec(checkpoint=GOLDEN / "tiny_video.pt")
    assert all(s is None for s in skips_in(codec, GOLDEN / name, 64, 64))
    frames = decode_video_frames((GOLDEN / name).read_bytes(), codec=codec)
    assert_decodes_as_recorded(name, frames)


# ---------------------------------------------------------------------------------------- corrupt skip streams
@pytest.fixture(scope="module")
def skip_files(tmp_path_factory):
    """A block-skip file (the moving object) and a whole-frame-skip file (static), GoPs of 3 frames."""
    from rdopt.api.video import encode_video

    d = tmp_path_factory.mktemp("skipfiles")
    codec = blockmean_video_codec()
    encode_video(codec, object_clip(3, H, W)[0], d / "blocks.rdov", gop=3, progress=False)
    encode_video(codec, [smooth_background(H, W)] * 3, d / "frame.rdov", gop=3, progress=False)
    return d


def _mutate(path: Path, out: Path, edit) -> Path:
    """``edit(frames)`` → the frames of the first GoP changed; written with valid lengths and CRCs, as named
    frame chunks (which hold any list of streams: a skip stream on an I-frame or out of place cannot even be written
    in the compact form the encoder uses)."""
    from rdopt.coding.rdov import GopChunk, pack_video, unpack_video

    header, gops = unpack_video(path.read_bytes())
    assert header.layout is not None
    frames = list(gops[0].frames)
    edit(frames)
    out.write_bytes(pack_video(replace(header, layout=None), [GopChunk(0, 0, tuple(frames))] + list(gops[1:])))
    return out


def _with_stream(fr, name, data=None, kind=None, drop=()):
    from rdopt.coding.container import Stream

    streams = [s for s in fr.streams if s.name not in drop]
    streams = [Stream(s.name, kind or s.kind, data if data is not None else s.data) if s.name == name else s
               for s in streams]
    return replace(fr, streams=tuple(streams))


CORRUPT = {
    "unknown mode": ("blocks", lambda f: f.__setitem__(1, _with_stream(f[1], "skip_1", b"\x09" + f[1].stream("skip_1").data[1:])),
                     "unknown skip mode 9"),
    "wrong grid": ("blocks", lambda f: f.__setitem__(1, _with_stream(f[1], "skip_1", f[1].stream("skip_1").data[:2] + b"\x04\x07"
                                                                      + f[1].stream("skip_1").data[4:])),
                   "a block skip mask of 4×7 blocks, the frame has 4×8"),
    "truncated mask": ("blocks", lambda f: f.__setitem__(1, _with_stream(f[1], "skip_1", f[1].stream("skip_1").data[:-4])),
                       "block skip"),
    "mask too long": ("blocks", lambda f: f.__setitem__(1, _with_stream(f[1], "skip_1", f[1].stream("skip_1").data
                                                                         + bytes([1, 2, 3, 4]) * 20)),
                      "too long for 32 blocks"),
    "I-frame": ("blocks", lambda f: f.__setitem__(0, replace(f[0], streams=f[0].streams + (f[1].stream("skip_1"),))),
                "frame 0 of a GoP is an I-frame with a skip stream"),
    "frame skip with residual": ("blocks", lambda f: f.__setitem__(1, _with_stream(f[1], "skip_1", b"\x01")),
                                 "skipped whole: no residual streams"),
    "blocks without residual": ("frame", lambda f: f.__setitem__(1, _with_stream(
        f[1], "skip_1", pack_blocks())), "and its skip stream"),
    "not last": ("blocks", lambda f: f.__setitem__(1, replace(f[1], streams=(f[1].streams[-1],) + f[1].streams[:-1])),
                 "a P-frame may end with one"),
    "misnamed": ("frame", lambda f: f.__setitem__(1, _with_stream(f[1], "skip_1", kind="residual")),
                 "a P-frame may end with one"),
    "trailing byte": ("frame", lambda f: f.__setitem__(2, _with_stream(f[2], "skip_2", b"\x01\x00")),
                      "a whole-frame skip stream has 2 bytes, not 1"),
}


def pack_blocks() -> bytes:
    from rdopt.coding.skip import FrameSkip, pack_skip

    return pack_skip(FrameSkip("blocks", np.eye(4, 8, dtype=bool)))


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_skip_streams_are_one_line_errors(case, skip_files, cli, tmp_path):
    which, edit, pattern = CORRUPT[case]
    bad = _mutate(skip_files / f"{which}.rdov", tmp_path / "bad.rdov", edit)
    one_error_line(cli("decode", bad, "-o", tmp_path / "out.y4m", "--codec", SPEC), pattern)
    assert not (tmp_path / "out.y4m").exists()


# ---------------------------------------------------------------------------------------- rdopt info
def test_info_shows_skips_without_torch(skip_files, cli):
    code, text, err = cli("info", skip_files / "blocks.rdov")
    assert code == 0, err
    lines = text.splitlines()
    head = next(line for line in lines if line.split()[:1] == ["frame"])
    assert head.rstrip().endswith("skipped") and "skip" in head.split()
    rows = [line for line in lines if line.split()[:1] in (["1"], ["2"])]
    assert all(r.rstrip().endswith("/32 blocks") for r in rows)
    doc = json.loads(cli("info", skip_files / "blocks.rdov", "--json")[1])
    table = doc["frame_table"]
    assert table[0]["skip"] is None and all(f["skip"]["mode"] == "blocks" and f["skip"]["of"] == 32 for f in table[1:])
    assert doc["skipped_blocks"] == sum(f["skip"]["blocks"] for f in table[1:]) > 0 and doc["skipped_frames"] == 0
    doc = json.loads(cli("info", skip_files / "frame.rdov", "--json")[1])
    assert [f["skip"] for f in doc["frame_table"]] == [None, {"mode": "frame"}, {"mode": "frame"}]
    assert doc["skipped_frames"] == 2 and doc["frame_table"][1]["streams"]["skip_1"] == {"kind": "skip", "bytes": 1}
    code = ("import sys, json; from rdopt.coding.describe import describe_rdov; "
            f"d = describe_rdov({str(skip_files / 'blocks.rdov')!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(d['skipped_blocks'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC))
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 0
