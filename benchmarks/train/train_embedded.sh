#!/usr/bin/env bash
# How the embedded rdopt-msh models were trained (CPU, 2 cores). Resumable: rerun to continue.
# One thread, so that the machine's second core stays free for other work.
# Base model at quality 4 (λ = 0.0130), then the other rate points fine-tuned from it.
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
W=src/rdopt/models/weights
S=runs/train
mkdir -p "$S" "$W"
$RD train --out $S/q4.state.pt --quality 4 --steps 5000 --lr 5e-4 --seed 4 --threads 1 --export $W/rdopt-msh-q4.pt
for q in 3 5 2 6; do
  $RD train --out $S/q$q.state.pt --quality $q --steps 800 --lr 1.5e-4 --seed $q --threads 1 \
    --init $W/rdopt-msh-q4.pt --export $W/rdopt-msh-q$q.pt
done
