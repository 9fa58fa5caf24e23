#!/usr/bin/env bash
# R-D of every method vs amortized on 256×256 center crops of the six evaluation photos, qualities 2-5,
# 300 steps, Adam lr 0.03, schedule fitted to the budget (CPU budget; the paper uses 2000 steps).
# Resumable; after new weights of some qualities, a rerun recomputes only those (--redo-stale).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/torchrun --standalone --nproc_per_node=2 -m rdopt eval images eval-set --model rdopt-msh --crop 256 \
  --methods amortized,sga,noise,ste,map,danneal --qualities 2,3,4,5 \
  --steps 300 --lr 0.03 --schedule budget --lr-decay cosine --trace --quiet --redo-stale --out benchmarks/image/rd_256.json
.venv/bin/rdopt report benchmarks/image/rd_256.json | tee benchmarks/image/rd_256.txt
