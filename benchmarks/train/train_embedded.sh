#!/usr/bin/env bash
# How the embedded rdopt-msh models were trained (CPU, 2 cores). Resumable: rerun to continue.
# Base model at quality 4 (λ = 0.0130): 5000 steps at lr 5e-4, then resumed to 12000 steps at lr 3e-4
# (the state keeps Adam's moments; each phase ends with a cosine decay over its last 20 %).
# The other rate points are fine-tuned from the base, two jobs at a time with one thread each:
# q2 and q3 for 2000 steps; q5 and q6 for 2000 steps, then resumed to 5000 (same lr, a second phase).
# The per-step logs are copied to benchmarks/train/logs/ at the end (summary: summary.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
W=src/rdopt/models/weights
S=runs/train
mkdir -p "$S" "$W" benchmarks/train/logs
$RD train --out $S/q4.state.pt --quality 4 --steps 5000 --lr 5e-4 --seed 4 --threads 1
$RD train --out $S/q4.state.pt --quality 4 --steps 12000 --lr 3e-4 --seed 4 --threads 1 --export $W/rdopt-msh-q4.pt
finetune() {  # quality, steps
  $RD train --out $S/ft-q$1.state.pt --quality $1 --steps $2 --lr 3e-4 --seed $1 --threads 1 \
    --init $W/rdopt-msh-q4.pt --export $W/rdopt-msh-q$1.pt
}
pair() { finetune $1 $3 & local a=$!; finetune $2 $3 & local b=$!; wait $a; wait $b; }
pair 3 5 2000
pair 2 6 2000
pair 5 6 5000
cp $S/*.log.jsonl benchmarks/train/logs/
