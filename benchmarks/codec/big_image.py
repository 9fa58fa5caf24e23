"""Time and peak memory of an amortized `rdopt encode` and an `rdopt decode` of a 12-megapixel photo.

The test photo is scikit-image's `coffee` (600×400) upscaled with Pillow's LANCZOS to 4500×3000, centre-cropped
to 4000×3000, with mild Gaussian noise (σ = 2, seed 0): a photo-like input, not evaluation data. Each command
runs once under GNU time (`/usr/bin/time -v`: wall, user and system seconds, peak resident memory of the
process); the figures and the exact commands are written to a Markdown record.

    .venv/bin/python benchmarks/codec/big_image.py --model rdopt-msh --record benchmarks/codec/big_image.md
    # with a tree from before the tiled path, run first, for comparison:
    git archive HEAD src | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    .venv/bin/python benchmarks/codec/big_image.py --model rdopt-msh --before /tmp/before/src --record benchmarks/codec/big_image.md
    # rdopt-scc (the default image model) before and after its tiled path (HEAD 7f74e90 as /tmp/before):
    .venv/bin/python benchmarks/codec/big_image.py --before /tmp/before/src --no-metrics --record benchmarks/codec/big_image_scc.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import background_jobs, load_average  # benchmarks/codec/machine.py

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 4000, 3000


def make_photo(path: Path) -> None:
    import numpy as np
    from PIL import Image
    from skimage import data

    im = Image.fromarray(data.coffee()).resize((4500, 3000), Image.Resampling.LANCZOS)
    left = (4500 - WIDTH) // 2
    a = np.asarray(im.crop((left, 0, left + WIDTH, HEIGHT)), dtype=np.float64)
    a += np.random.default_rng(0).normal(0.0, 2.0, a.shape)
    Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).save(path)


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: its exit status, output and GNU time's figures."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name, *cmd], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        report = Path(tf.name).read_text()

    def field(name: str) -> str:
        m = re.search(rf"^\s*{re.escape(name)}: (.*)$", report, re.M)
        return m.group(1).strip() if m else ""

    return {"code": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "wall": wall,
            "user": float(field("User time (seconds)") or 0), "sys": float(field("System time (seconds)") or 0),
            "peak_kb": int(field("Maximum resident set size (kbytes)") or 0)}


def run_tree(src: str, work: Path, photo: Path, threads: int, model: str | None = None) -> dict:
    """Encode and decode the photo with the source tree ``src``: the commands, GNU time's figures, the report."""
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS=str(threads))
    py = str(ROOT / ".venv" / "bin" / "python")
    rdo, out = work / "big.rdo", work / "big_decoded.png"
    opts = ["--threads", str(threads)]
    enc_cmd = [py, "-m", "rdopt", "encode", str(photo), "-o", str(rdo), "--method", "amortized", *opts,
               *(["--model", model] if model else [])]
    dec_cmd = [py, "-m", "rdopt", "decode", str(rdo), "-o", str(out), *opts]
    res = {"src": src, "commands": [], "rows": []}
    for name, cmd in (("encode (amortized)", enc_cmd), ("decode", dec_cmd)):
        r = timed(cmd, env)
        if r["code"] != 0:
            raise SystemExit(f"{shlex.join(cmd)} failed:\n{r['stderr']}")
        shown = shlex.join([".venv/bin/python", *cmd[1:]]).replace(str(work), "$WORK")
        res["commands"].append(f"PYTHONPATH={_rel(src)} OMP_NUM_THREADS={threads} /usr/bin/time -v {shown}")
        res["rows"].append((name, r))
        if name.startswith("encode"):
            res["sha256"] = hashlib.sha256(rdo.read_bytes()).hexdigest()
            res["report"] = r["stdout"].rstrip()
            res["bars"] = [b for b in ("analysis", "decode") if re.search(rf"{b}:\s+\d+%", r["stderr"])]
    return res


# One measurement of the encode's quality metrics on the photo and its decoded image, in a fresh process: the
# peak resident memory above what the process held once the two 8-bit images were loaded (psutil, sampled
# every 5 ms), the seconds and the value.
METRIC_SNIPPET = r"""
import json, sys, threading, time
import numpy as np, psutil, torch
from PIL import Image
torch.set_num_threads(1)
proc, peak = psutil.Process(), [0]
def sample():
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)
a = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
b = np.asarray(Image.open(sys.argv[3]).convert("RGB"))
from pytorch_msssim import ms_ssim
from rdopt.metrics.quality import lossless_png_bytes, ms_ssim_banded
threading.Thread(target=sample, daemon=True).start()
time.sleep(0.2)
base = proc.memory_info().rss
peak[0] = base
t = time.perf_counter()
what = sys.argv[1]
if what.startswith("pytorch_msssim"):
    dt = torch.float64 if what.endswith("float64") else torch.float32
    ta = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].to(dt)
    tb = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].to(dt)
    value = float(ms_ssim(ta, tb, data_range=255.0))
elif what == "ms_ssim_banded":
    value = ms_ssim_banded(a, b)
else:
    value = lossless_png_bytes(b)
seconds = time.perf_counter() - t
time.sleep(0.05)
print(json.dumps({"seconds": seconds, "above": peak[0] - base, "value": value}))
"""
METRICS = (
    ("pytorch_msssim float64", "MS-SSIM as the whole-image path computes it (`rdopt.metrics.quality.ms_ssim`)"),
    ("pytorch_msssim float32", "the same in float32"),
    ("ms_ssim_banded", "MS-SSIM of the tiled path (`ms_ssim_banded`: float64, bands of rows)"),
    ("png", "the rate guard's lossless PNG of the input (Pillow, zlib level 1)"),
)


def measure_metrics(src: str, photo: Path, decoded: Path, threads: int) -> list[str]:
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS=str(threads))
    py = str(ROOT / ".venv" / "bin" / "python")
    rows = []
    for what, label in METRICS:
        r = subprocess.run([py, "-c", METRIC_SNIPPET, what, str(decoded), str(photo)], capture_output=True, text=True,
                           env=env)
        if r.returncode != 0:
            raise SystemExit(f"measuring {what} failed:\n{r.stderr}")
        m = json.loads(r.stdout.strip().splitlines()[-1])
        value = f"{m['value']:.16f}" if isinstance(m["value"], float) else f"{m['value']} bytes"
        rows.append(f"| {label} | {m['seconds']:.1f} | {m['above'] / 2**20:.0f} MiB | {value} |")
    return rows


def model_of(report: str) -> str:
    """The model an encode's text report names (its first line: ``model  NAME (λ=…), method …``)."""
    m = re.search(r"^model\s+(\S+)", report, re.M)
    return m.group(1) if m else "?"


def _rel(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(ROOT / "src"), help="source tree to run (PYTHONPATH), default this one")
    p.add_argument("--before", default=None, metavar="SRC",
                   help="also run this source tree first, for comparison (e.g. `git archive HEAD src | tar -x -C "
                        "/tmp/before` → /tmp/before/src)")
    p.add_argument("--before-label", default="before", help="what --before is, for the record")
    p.add_argument("--work", default=None, help="folder for the photo and the files (default: a temporary one)")
    p.add_argument("--threads", type=int, default=1, help="--threads of rdopt encode / decode (default 1)")
    p.add_argument("--model", default=None, help="--model of rdopt encode (default: none, the default image model)")
    p.add_argument("--record", default=None, help="write the Markdown record here")
    p.add_argument("--no-metrics", action="store_true",
                   help="skip the separate measurement of MS-SSIM (whole-image and banded) and of the PNG guard")
    args = p.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rdopt-big-"))
    work.mkdir(parents=True, exist_ok=True)
    photo = work / "big.png"
    if not photo.exists():
        make_photo(photo)
    load_before, jobs = load_average(), background_jobs("big_image.py")
    runs = []
    if args.before:
        runs.append((args.before_label, run_tree(args.before, work, photo, args.threads, args.model)))
    runs.append(("this tree", run_tree(args.src, work, photo, args.threads, args.model)))
    metrics = [] if args.no_metrics else measure_metrics(args.src, photo, work / "big_decoded.png", args.threads)
    load_after = load_average()
    mp = WIDTH * HEIGHT / 1e6
    table, commands = [], []
    for label, res in runs:
        commands += [f"# {label}", *res["commands"]]
        for name, r in res["rows"]:
            cpu = r["user"] + r["sys"]
            table.append(f"| {label} | {name} | {r['wall']:.1f} | {cpu:.1f} | {r['wall'] / mp:.2f} | {cpu / mp:.2f} | "
                         f"{r['peak_kb'] / 1024:.0f} MiB ({r['peak_kb'] * 1024 / 1e9:.2f} GB) |")
    mine = runs[-1][1]
    enc_peak, dec_peak = (r["peak_kb"] * 1024 for _, r in mine["rows"])
    lines = [
        f"# Amortized encode and decode of a {WIDTH}×{HEIGHT} photo ({mp:.0f} MP)",
        "",
        f"Produced by `benchmarks/codec/big_image.py` on {time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs), one run of each command.",
        "",
        f"**The machine was loaded**: load average {load_before} before, {load_after} after; {len(jobs)} other rdopt "
        f"process(es) ran ({'; '.join(sorted({j.split(' --')[0][:60] for j in jobs}))}), so wall times are inflated "
        "and noisy (compare CPU seconds); peak memory is not affected by the load.",
        "",
        "Input: scikit-image's `coffee` (600×400) upscaled with Pillow LANCZOS to 4500×3000, centre-cropped to "
        f"{WIDTH}×{HEIGHT}, Gaussian noise σ = 2 (seed 0) — a photo-like test input, not evaluation data "
        f"(PNG {photo.stat().st_size / 1e6:.1f} MB). Model: `{model_of(mine['report'])}`"
        f"{' (--model)' if args.model else ' (the default image model)'}.",
        "",
        "Commands (`$WORK` is the folder of the photo):",
        "",
        "```",
        *commands,
        "```",
        "",
        "| tree | command | wall s | CPU s (user+sys) | wall s / MP | CPU s / MP | peak RSS |",
        "|---|---|---|---|---|---|---|",
        *table,
        "",
        f"Target (this tree): peak ≤ 2 GB — encode {'met' if enc_peak <= 2e9 else 'NOT met'}, decode "
        f"{'met' if dec_peak <= 2e9 else 'NOT met'}. Progress bars on standard error during the encode: "
        f"{', '.join(mine['bars']) if mine['bars'] else 'none seen'}.",
    ]
    if len(runs) > 1:
        same = len({res["sha256"] for _, res in runs}) == 1
        lines += ["", f"The .rdo files the trees wrote are {'byte-identical' if same else 'DIFFERENT'} "
                  f"(SHA-256 {', '.join(res['sha256'][:16] for _, res in runs)})."]
    if metrics:
        lines += [
            "",
            "The encode's quality measurements on this photo and its decoded image, each in a fresh process "
            "(`measure_metrics` in the script: one thread, peak resident memory above the two loaded 8-bit images, "
            "psutil sampled every 5 ms):",
            "",
            "| measurement | seconds | peak memory above the images | value |",
            "|---|---|---|---|",
            *metrics,
        ]
    for label, res in runs:
        lines += ["", f"The encode's report, {label} (its times are inside the process; the table's are the whole "
                  "process, start-up included):", "", "```", res["report"], "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        Path(args.record).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
