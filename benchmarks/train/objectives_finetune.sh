#!/usr/bin/env bash
# Fine-tuning check at CPU scale: fine-tune the shipped rdopt-msh-q3 with the multi-sample objective that won
# the comparison of objectives.sh (ms-mix, k = 8) and, as the control, with the ELBO — same data (the phase-5
# mix), steps, lr, crops and seed — then the R-D cost of both and of the unchanged shipped weights on the
# evaluation photos.
#
#   STEPS=600 benchmarks/train/objectives_finetune.sh          # → runs/objectives-ft/summary.md
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=${RD:-.venv/bin/rdopt}
OUT=${OUT:-runs/objectives-ft}
STEPS=${STEPS:-600}
mkdir -p "$OUT"
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
ft() {  # name, objective options…
  local name=$1; shift
  $RD train --init src/rdopt/codecs/weights/rdopt-msh-q3.pt --quality 3 --steps "$STEPS" --lr 1e-4 --crop 128 --batch 4 \
    --threads 1 --extra-data runs/photos/train --source-weights 0.35 0.1 0.55 --seed 77 --log-every 50 \
    --out "$OUT/$name.state.pt" --export "$OUT/$name.pt" "$@"
}
ft ft-elbo --objective elbo
ft ft-ms-mix-k8 --objective ms-mix --samples 8
.venv/bin/python benchmarks/train/objectives_summary.py "$OUT" --quality 3 \
  --extra shipped-q3=src/rdopt/codecs/weights/rdopt-msh-q3.pt --extra ft-elbo="$OUT/ft-elbo.pt" \
  --extra ft-ms-mix-k8="$OUT/ft-ms-mix-k8.pt" --baseline shipped-q3 | tee "$OUT/summary.md"
