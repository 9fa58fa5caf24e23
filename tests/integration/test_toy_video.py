"""The protocol suffices for a new codec: a toy two-frame "video" codec written only against the protocol
(tests/toy_codecs.py) runs through amortized, SGA, joint, sequential, windowed and exact encoding,
writes a v2 container and decodes — with no code of its own outside that file."""

import json

import pytest
import torch

from rdopt.api.image import decode_latents, rdo_file
from rdopt.coding.container import Header, pack, unpack
from rdopt.infer.codec_graph import Target, codec_graph
from rdopt.infer.image import savi
from rdopt.infer.options import SolverOptions
from toy_codecs import ToyVideoCodec, smooth_frames

RUNS = {
    "amortized": SolverOptions(method="amortized", steps=0, progress=False),
    "sga": SolverOptions(method="sga", steps=80, lr=0.05, progress=False, eval_every=5),
    "joint": SolverOptions(method="danneal", steps=40, lr=0.05, progress=False, eval_every=5),
    "sequential": SolverOptions(method="sga", steps=30, lr=0.05, solver="sequential", progress=False, eval_every=5),
    "windowed": SolverOptions(method="sga", steps=30, lr=0.05, solver="windowed", window=0, progress=False,
                            eval_every=5),
    "exact": SolverOptions(method="ste", steps=2, lr=1e-3, solver="exact", progress=False),
}


@pytest.fixture(scope="module")
def problem():
    codec = ToyVideoCodec()
    x = smooth_frames(2, 16, 24)
    return codec, x, codec_graph(codec), Target(x, 0.02)


@pytest.mark.parametrize("run", list(RUNS))
def test_toy_video_encodes_writes_v2_and_decodes(problem, run):
    codec, x, graph, target = problem
    options = RUNS[run]
    res = savi(graph, target, options)
    assert (res.final_loss <= res.initial_loss + 1e-9).all(), (res.initial_loss, res.final_loss)
    if run == "sga":  # can fail: a real improvement, not only "never worse"
        assert (res.final_loss < 0.98 * res.initial_loss).all(), (res.initial_loss, res.final_loss)
    if run in ("sequential", "windowed"):  # one stage per frame (App. A.5): y0,z0 then r1,h1
        assert [st.nodes for st in res.dag.stages] == [("y0", "z0"), ("r1", "h1")]
    q = codec.quantize(res.latents)
    coded = codec.compress(q)
    header = Header(codec.model_id, codec.weight_hash()[:8], height=16, width=24, method=options.method,
                    steps=options.steps, solver=options.solver)
    for b in range(x.shape[0]):
        data = pack(rdo_file(codec, coded, b, header, side_info_bits=(0, 17)))
        f = unpack(data)
        assert f.version == 2 and [fr.type for fr in f.frames] == ["I", "P"]
        assert [[s.name for s in fr.streams] for fr in f.frames] == [["y0", "z0"], ["r1", "h1"]]
        assert [s.kind for s in f.frames[1].streams] == ["residual", "residual-hyper"]
        assert f.frames[1].side_info_bits == 17 and f.header.solver == options.solver
        latents, _ = decode_latents(data, codec)
        for n in q.names:
            torch.testing.assert_close(latents[n], q[n][b : b + 1], rtol=0, atol=0)
        torch.testing.assert_close(codec.reconstruct(latents), codec.reconstruct(q)[b : b + 1])


def test_windows_count_frames_not_latents(problem):
    _, _, graph, _ = problem
    assert graph.frames == (0, 0, 1, 1)
    w = graph.window("y0", 0)  # C = 0: frame 0 only, both of its latents
    assert w.nodes == ("y0", "z0") and w.terms == ("frame0",)
    w = graph.window("y0", 1)
    assert w.nodes == ("y0", "z0", "r1", "h1") and w.terms == ("frame0", "frame1")
    assert graph.window("r1", 0).terms == ("frame1",)


def test_lambda_per_item_and_per_pixel(problem):
    codec, x, graph, _ = problem
    base = savi(graph, Target(x, 0.02), RUNS["amortized"]).final_loss
    per_item = savi(graph, Target(x, torch.tensor([0.02, 0.02], dtype=x.dtype)), RUNS["amortized"]).final_loss
    torch.testing.assert_close(per_item, base)
    per_pixel = savi(graph, Target(x, torch.full((16, 24), 0.02, dtype=x.dtype)), RUNS["amortized"]).final_loss
    torch.testing.assert_close(per_pixel, base)
    heavier = savi(graph, Target(x, torch.tensor([0.02, 0.2], dtype=x.dtype)), RUNS["amortized"]).final_loss
    assert heavier[0] == pytest.approx(float(base[0])) and heavier[1] > base[1]


def test_info_counts_every_frame_of_a_multi_frame_file(problem, cli, tmp_path):
    """A two-frame .rdo holds 2·H·W coded pixels: its bpp divides by both frames."""
    codec, x, _, _ = problem
    coded = codec.compress(codec.quantize(codec.amortize(x)))
    header = Header(codec.model_id, codec.weight_hash()[:8], height=16, width=24, method="amortized", steps=0,
                    solver="joint")
    data = pack(rdo_file(codec, coded, 0, header))
    path = tmp_path / "two.rdo"
    path.write_bytes(data)
    code, out, err = cli("info", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["frames"]) == 2 and doc["bpp"] == pytest.approx(8 * len(data) / (2 * 16 * 24))
