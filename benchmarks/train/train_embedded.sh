#!/usr/bin/env bash
# How the embedded rdopt-msh models were trained (CPU, 2 cores). Resumable: rerun to continue.
# Base model at quality 4 (λ = 0.0130): 5000 steps at lr 5e-4, then resumed to 12000 steps at lr 3e-4
# (the state keeps Adam's moments; each phase ends with a cosine decay over its last 20 %).
# The other rate points are fine-tuned from the base, two jobs at a time with one thread each.
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
W=src/rdopt/models/weights
S=runs/train
mkdir -p "$S" "$W"
$RD train --out $S/q4.state.pt --quality 4 --steps 5000 --lr 5e-4 --seed 4 --threads 1
$RD train --out $S/q4.state.pt --quality 4 --steps 12000 --lr 3e-4 --seed 4 --threads 1 --export $W/rdopt-msh-q4.pt
finetune() {
  $RD train --out $S/ft-q$1.state.pt --quality $1 --steps 2000 --lr 3e-4 --seed $1 --threads 1 \
    --init $W/rdopt-msh-q4.pt --export $W/rdopt-msh-q$1.pt
}
pair() { finetune "$1" & local a=$!; finetune "$2" & local b=$!; wait $a; wait $b; }
pair 3 5
pair 2 6
