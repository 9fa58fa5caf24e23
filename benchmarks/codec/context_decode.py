"""Cost of the serial autoregressive pass of CompressAI's ``mbt2018`` per 768×512 image: rdopt's serial quantize
(:meth:`rdopt.codecs.image.context.ContextAdapter.quantize`), the stock decode, the stock encode, and beside them
one SGA step and one true (hard) evaluation, which the optimization loop runs every ``eval_every`` steps.

The model is a default-size ``JointAutoregressiveHierarchicalPriors`` (N = M = 192) with random weights (seed 0)
and CompressAI's default tables (``update(force=True)``): the serial pass costs the same whatever the weights — one
5×5 context convolution and the 1×1 entropy-parameter stack per position of y, 48×32 = 1536 positions one after
another. The image is scikit-image's ``coffee`` resized to 768×512 (Pillow LANCZOS; a smooth pattern if
scikit-image's data is missing). Each timing is the median of ``--repeats`` runs in this process, at
``--threads`` PyTorch threads; the serial results are checked bit for bit against the stock decoder.

    .venv/bin/python benchmarks/codec/context_decode.py --record benchmarks/codec/context_decode.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

from machine import background_jobs, load_average  # benchmarks/codec/machine.py

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 768, 512


def image() -> tuple[np.ndarray, str]:
    from PIL import Image

    try:
        from skimage import data

        im = Image.fromarray(data.coffee()).resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
        return np.asarray(im), "scikit-image `coffee` resized to 768×512 (LANCZOS)"
    except Exception:  # noqa: BLE001 - no scikit-image data here: a deterministic smooth pattern instead
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
        a = np.stack([128 + 90 * np.sin(xx / 9) * np.cos(yy / 13), 60 + 150 * (xx + yy) / (WIDTH + HEIGHT),
                      np.where(xx > WIDTH / 2, 200.0, 40.0)], 2)
        return np.clip(np.rint(a), 0, 255).astype(np.uint8), "a synthetic smooth pattern (no scikit-image data)"


def median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default 3; the median is shown)")
    p.add_argument("--record", default=None, help="write the Markdown record here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import rdopt.codecs  # noqa: F401 - CompressAI without its package __init__, as rdopt loads it
    from compressai.models import JointAutoregressiveHierarchicalPriors

    from rdopt.codecs.image.context import ContextAdapter
    from rdopt.core.types import relax_all
    from rdopt.data.images import to_batch
    from rdopt.relax.rounding import sga

    load_before, jobs = load_average(), background_jobs("context_decode.py")
    torch.manual_seed(0)
    t = time.perf_counter()
    net = JointAutoregressiveHierarchicalPriors(N=192, M=192).eval()
    net.update(force=True)
    setup = time.perf_counter() - t
    model = ContextAdapter(net, "mbt2018-custom", 0.0067).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    rgb, source = image()
    x = to_batch([rgb], 64)
    with torch.no_grad():
        lat = model.amortize(x)
    steps = model.sequential_steps(x.shape[-2], x.shape[-1])

    def fresh(k: int):  # a new y for every run: the adapter remembers its last serial passes
        return lat.merged({"y": lat["y"] + 1e-3 * k})

    runs = iter(range(1, 10_000))
    with torch.no_grad():
        t_quantize, all_q = median_seconds(lambda: model.quantize(fresh(next(runs))), args.repeats)
        q = model.quantize(lat)
        t_compress, all_c = median_seconds(lambda: net.compress(x), args.repeats)
        coded = model.compress(q)
        strings, shape = [coded.streams["y"], coded.streams["z"]], coded.shapes["z"][-2:]
        t_stock, all_s = median_seconds(lambda: net.decompress(strings, shape), args.repeats)
        t_ours, all_o = median_seconds(lambda: model.decompress(coded), args.repeats)
        t_gs, _ = median_seconds(lambda: model.synthesize(q["y"]), args.repeats)
        same = torch.equal(model.decompress(coded)["y"], q["y"])
        pixels_same = torch.equal(net.decompress(strings, shape)["x_hat"], model.reconstruct(q).clamp(0, 1))
        t_hard, all_h = median_seconds(lambda: model.hard_evaluate(fresh(next(runs))), args.repeats)

    def sga_step():
        y = lat["y"].clone().requires_grad_(True)
        z = lat["z"].clone().requires_grad_(True)
        ev = model.evaluate(lat.merged({"y": y, "z": z}), relax_all(sga(0.5, torch.Generator().manual_seed(0)),
                                                                     ("y", "z")))
        loss = ev.bits.sum() / (WIDTH * HEIGHT) + 0.0067 * 255.0**2 * (ev.x_hat - x).pow(2).mean()
        loss.backward()

    t_step, all_g = median_seconds(sga_step, args.repeats)
    load_after = load_average()
    n_bytes = coded.num_bytes(0)

    def ms(v: float) -> str:
        return f"{1e3 * v / steps:.2f}"

    def row(name: str, med: float, every: list[float] | None, per_step: bool = True) -> str:
        runs_text = ", ".join(f"{v:.2f}" for v in every) if every else ""
        return f"| {name} | {med:.2f} | {ms(med) if per_step else '–'} | {runs_text} |"

    command = shlex.join([".venv/bin/python", "benchmarks/codec/context_decode.py", "--threads", str(args.threads),
                          "--repeats", str(args.repeats), *(["--record", args.record] if args.record else [])])
    lines = [
        f"# Serial autoregressive pass of mbt2018 (N = M = 192) per {WIDTH}×{HEIGHT} image",
        "",
        f"Produced by `benchmarks/codec/context_decode.py` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} PyTorch "
        f"thread(s)); median of {args.repeats} runs in one process.",
        "",
        "```",
        command,
        "```",
        "",
        f"**The machine was loaded**: load average {load_before} before, {load_after} after, on "
        f"{os.cpu_count()} CPUs; {len(jobs)} other rdopt / pytest process(es) ran (two `rdopt train` jobs among "
        "them, each keeping a core busy), so the wall times are inflated and noisy — read them as upper bounds "
        "and compare the rows with each other.",
        "",
        f"Model: `JointAutoregressiveHierarchicalPriors(N=192, M=192)`, random weights (seed 0), CompressAI's "
        f"default tables (`update(force=True)`, {setup:.1f} s). Image: {source}. y has {steps} positions "
        f"({HEIGHT // 16} rows × {WIDTH // 16} columns): {steps} sequential context steps per decode. The file's "
        f"payload: {n_bytes} bytes.",
        "",
        "| what | seconds per image | ms per position | runs (s) |",
        "|---|---|---|---|",
        row("rdopt serial quantize (`ContextAdapter.quantize`: h_s + serial pass)", t_quantize, all_q),
        row("stock decode (`net.decompress`: rANS + serial pass + g_s)", t_stock, all_s),
        row("rdopt decompress (stock `_decompress_ar`, ŷ only)", t_ours, all_o),
        row("stock encode (`net.compress`: g_a, h_a, serial `_compress_ar` + rANS)", t_compress, all_c),
        row("g_s alone (the parallel part of a decode)", t_gs, None, per_step=False),
        row("true (hard) evaluation in the SGA loop (serial pass + g_s + likelihoods)", t_hard, all_h),
        row("one SGA step (parallel teacher-forced evaluation, forward + backward)", t_step, all_g, per_step=False),
        "",
        f"Checks: rdopt's serial ŷ equals the stock decoder's ŷ bit for bit: {'yes' if same else 'NO'}; the stock "
        f"`decompress` picture equals `g_s(ŷ)` of rdopt's quantize: {'yes' if pixels_same else 'NO'}.",
        "",
        f"Reading: the serial pass is {1e3 * t_quantize / steps:.1f} ms per position here, i.e. "
        f"{t_quantize:.1f} s per {WIDTH}×{HEIGHT} image, against {t_gs:.2f} s for the synthesis; an SGA step "
        f"(parallel) costs {t_step:.2f} s. The loop evaluates the true cost every `eval_every` steps (default 10), "
        f"so the true evaluation adds about {t_hard / 10:.2f} s per step on average "
        f"({100 * t_hard / 10 / t_step:.0f} % of a step) at the default; packaging a result adds a few more passes "
        "(quantize, the amortized reference, the stock encoder and the verifying decode).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        Path(args.record).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
