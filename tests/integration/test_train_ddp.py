"""Data-parallel training: two CPU processes (gloo) run the one training loop under
DistributedDataParallel; the replicas stay identical, rank 0 alone writes the checkpoint and the log,
and both resume from it."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from conftest import pattern_image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, dump: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from rdopt.training import TrainConfig, make_task, train

    cfg = TrainConfig(**cfg_dict)
    task = make_task(cfg, torch.device("cpu"))
    seen = []
    original = task.loss

    def loss(batch, gen, step):  # record the local batch size and first pixel: the ranks' data differ
        seen.append((batch.shape[0], float(batch.flatten()[0])))
        return original(batch, gen, step)

    task.loss = loss
    summary = train(cfg, device="cpu", task=task)
    torch.save({"state": task.module.state_dict(), "summary": summary, "seen": seen}, f"{dump}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_stay_identical_and_resume_from_rank_0(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for s in range(3):
        Image.fromarray(pattern_image(80, 96, s)).save(data / f"t{s}.png")
    out = tmp_path / "state.pt"
    cfg = dict(out=str(out), lmbda=0.0067, steps=2, channels=(16, 16), batch=3, crop=64, data=str(data), threads=1,
               log_every=1, objective="ms-mix", samples=2, seed=3)
    dump = str(tmp_path / "dump")
    mp.spawn(_worker, args=(2, _free_port(), cfg, dump), nprocs=2, join=True)
    a, b = torch.load(dump + ".0", weights_only=False), torch.load(dump + ".1", weights_only=False)
    assert [n for n, _ in a["seen"]] == [2, 2] and [n for n, _ in b["seen"]] == [1, 1]  # global batch 3 split 2 + 1
    assert a["seen"][0][1] != b["seen"][0][1]
    for name, t in a["state"].items():
        assert torch.equal(t, b["state"][name]), name
    state = torch.load(out, weights_only=True)
    assert state["step"] == 2
    for name, t in state["model"].items():
        assert torch.equal(t, a["state"][name]), name
    assert a["summary"]["world_size"] == 2
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # one writer
    # the weights moved (a real step happened) …
    init = torch.load(dump + ".0", weights_only=False)["state"]
    # … resume to step 4: both ranks load rank 0's checkpoint and stay identical
    mp.spawn(_worker, args=(2, _free_port(), {**cfg, "steps": 4}, dump), nprocs=2, join=True)
    a, b = torch.load(dump + ".0", weights_only=False), torch.load(dump + ".1", weights_only=False)
    assert len(a["seen"]) == 2 and len(b["seen"]) == 2
    for name, t in a["state"].items():
        assert torch.equal(t, b["state"][name]), name
    assert any(not torch.equal(t, init[name]) for name, t in a["state"].items() if t.is_floating_point())
    assert torch.load(out, weights_only=True)["step"] == 4


@pytest.mark.slow
def test_video_training_takes_the_same_data_parallel_path(tmp_path):
    frames = tmp_path / "clip"
    frames.mkdir()
    base = pattern_image(100, 120, 3)
    for k in range(4):
        Image.fromarray(base[k: k + 80, 2 * k: 2 * k + 96]).save(frames / f"frame_{k + 1:05d}.png")
    out = tmp_path / "v.state.pt"
    cfg = dict(out=str(out), lmbda=512.0, steps=2, batch=2, crop=64, data=str(frames), threads=1, log_every=1,
               video=True, frames=2, bigbuckbunny=False, synthetic_share=0.5, seed=1)
    dump = str(tmp_path / "vdump")
    mp.spawn(_worker, args=(2, _free_port(), cfg, dump), nprocs=2, join=True)
    a, b = torch.load(dump + ".0", weights_only=False), torch.load(dump + ".1", weights_only=False)
    assert [n for n, _ in a["seen"]] == [1, 1] and [n for n, _ in b["seen"]] == [1, 1]
    for name, t in a["state"].items():
        assert torch.equal(t, b["state"][name]), name
    assert torch.load(out, weights_only=True)["step"] == 2
