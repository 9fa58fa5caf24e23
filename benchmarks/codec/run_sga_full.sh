#!/usr/bin/env bash
# The embedded models with rdopt's SGA encoder (300 steps, Adam lr 0.03, schedule fitted to the budget) on
# the six full-size evaluation photos, qualities 2-6, real .rdo files; BD-rate of amortized and SGA encodes
# against JPEG / WebP / AVIF (Pillow curves from `rdopt demo`, benchmarks/codec/demo/classic.json).
# Resumable; after new weights of some qualities, a rerun recomputes only those (--redo-stale).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/torchrun --standalone --nproc_per_node=2 -m rdopt eval images eval-set --model rdopt-msh --methods amortized,sga \
  --qualities 2,3,4,5,6 --steps 300 --lr 0.03 --schedule budget --lr-decay cosine --batch 1 --quiet --redo-stale \
  --out benchmarks/codec/sga_full.json
.venv/bin/python benchmarks/codec/vs_classic.py benchmarks/codec/sga_full.json benchmarks/codec/demo/classic.json \
  --plot benchmarks/codec/sga_full.png | tee benchmarks/codec/sga_full.txt
.venv/bin/rdopt report benchmarks/codec/sga_full.json | tee benchmarks/codec/sga_full.report.txt
