#!/usr/bin/env bash
# MS-NIC comparison of training objectives: the same small mean-scale hyperprior, data, λ, steps and seed trained with
#   elbo | elbo --no-direct-y | iwae (k=8) | ms-mix (k=8) | ms-dms (k=l=4) | ms-mix (k=8) dreg | ms-mix (k=8) --iw-weights bpp
# then the R-D cost (real bpp + λ·255²·MSE) of each export on the evaluation photos, the gradient SNR per parameter
# group with and without direct-y (elbo run, --measure-snr), and seconds per step vs k (ms-mix, k = 1, 2, 4, 8, 16).
#
#   benchmarks/train/objectives.sh                 # full size: STEPS=8000 per run (GPU-sized; hours per run on a CPU)
#   STEPS=20 TIMING_STEPS=5 SNR=3 OUT=runs/objectives-smoke benchmarks/train/objectives.sh   # smoke run
#   What was run (2026-11-30, CPU): STEPS=3000 BATCH=4 TIMING_STEPS=20 SNR=20 BPP_RUN=0 OUT=runs/objectives …, and a
#   second seed of two runs: STEPS=3000 BATCH=4 SNR=20 SEED=24 ONLY="elbo ms-mix-k8" OUT=runs/objectives-s24 …
#
# Resumable (rerun to continue: every run keeps its own state). Under torchrun set RD="torchrun --nproc_per_node=N -m rdopt".
# Summary (Markdown, also written to $OUT/summary.md):
#   .venv/bin/python benchmarks/train/objectives_summary.py $OUT --quality $QUALITY
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=${RD:-.venv/bin/rdopt}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/objectives}
QUALITY=${QUALITY:-3}             # λ = 0.0067
STEPS=${STEPS:-8000}
TIMING_STEPS=${TIMING_STEPS:-50}
SNR=${SNR:-50}                    # mini-batches for the gradient SNR
SEED=${SEED:-23}
BATCH=${BATCH:-8}
BPP_RUN=${BPP_RUN:-1}        # 0: leave out the ms-mix --iw-weights bpp variant (not one of the issue's five)
THREADS=${THREADS:-1}
# small model trained from scratch: N=32, M=64; 128² crops, batch 8, lr 3e-4 (the paper scales lr with k: not done here,
# every run sees the same lr so that only the objective differs)
# data: the embedded recipe's sources (half of the crops from the photos), or a folder DATA
if [ -n "${DATA:-}" ]; then SOURCE=(--data "$DATA"); else SOURCE=(--source-weights 0.5 0.5); fi
COMMON=(--quality "$QUALITY" --steps "$STEPS" --channels 32 64 --crop 128 --batch "$BATCH" --lr 3e-4 --seed "$SEED"
        --threads "$THREADS" --scales 1 0.5 0.25 "${SOURCE[@]}")
mkdir -p "$OUT"
ONLY=${ONLY:-}                 # e.g. ONLY="elbo ms-mix-k8": only these runs, no timing (a second seed)
run() {  # name, objective options…
  local name=$1; shift
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  $RD train --out "$OUT/$name.state.pt" --export "$OUT/$name.pt" "${COMMON[@]}" "$@"
}
run elbo --objective elbo --measure-snr "$SNR"
run elbo-no-direct-y --objective elbo --no-direct-y
run iwae-k8 --objective iwae --samples 8
run ms-mix-k8 --objective ms-mix --samples 8 --measure-snr "$SNR"
run ms-dms-k4l4 --objective ms-dms --samples 4 --z-samples 4
run ms-mix-k8-dreg --objective ms-mix --samples 8 --estimator dreg
# time per step vs k: the same short run from scratch for each k (log every step)
for k in $([ -n "$ONLY" ] || echo 1 2 4 8 16); do
  if [ "$k" = 1 ]; then obj=(--objective elbo); else obj=(--objective ms-mix --samples "$k"); fi
  $RD train --out "$OUT/timing-k$k.state.pt" --quality "$QUALITY" --steps "$TIMING_STEPS" --channels 32 64 --crop 128 \
    --batch "$BATCH" --seed "$SEED" --threads "$THREADS" --log-every 1 --scales 1 0.5 0.25 "${SOURCE[@]}" "${obj[@]}"
done
[ "$BPP_RUN" = 0 ] || run ms-mix-k8-bpp --objective ms-mix --samples 8 --iw-weights bpp
$PY benchmarks/train/objectives_summary.py "$OUT" --quality "$QUALITY" | tee "$OUT/summary.md"
