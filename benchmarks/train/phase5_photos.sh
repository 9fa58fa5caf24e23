#!/usr/bin/env bash
# Phase 5 of the embedded models (the scale-floor fix, 2026-11-30): natural photos from Debian's wallpaper packages,
# colour augmentation and a penalty on prior scales below the entropy model's floor. Resumable: rerun to continue.
# Every rate point continues from its phase-4 weights (the shipped ones before this phase): 256² crops in batches of 2 (6000 steps, 4000 at q2),
# lr 1e-4 (cosine decay over the last 20 %), crops at scales 1, 1/2, 1/4 drawn 35 % from bigbuckbunny, 10 % from the
# scikit-image training photos and 55 % from the wallpaper photos (fetch_photos.py; the four stress photos held out),
# half of them colour-jittered (training.ColorJitter), scale-floor penalty weight 0.1. Two queues, one thread each.
# The exports go to runs/train/p5-q*.pt; they replace the shipped weights after the stress and R-D checks
# (train/README.md, "Phase 5"): cp runs/train/p5-qQ.pt src/rdopt/codecs/weights/rdopt-msh-qQ.pt
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
W=src/rdopt/codecs/weights
S=runs/train
mkdir -p "$S"
[ -n "${P5_INIT:-}" ] || P5_INIT=$S/p4   # phase-4 weights, saved before the shipped files are replaced
mkdir -p $P5_INIT
for q in 2 3 4 5 6; do [ -f $P5_INIT/rdopt-msh-q$q.pt ] || cp $W/rdopt-msh-q$q.pt $P5_INIT/; done
.venv/bin/python benchmarks/train/fetch_photos.py runs/photos
phase5() {  # quality, steps
  $RD train --out $S/p5-q$1.state.pt --quality $1 --steps $2 --lr 1e-4 --seed $((80 + $1)) --threads 1 \
    --init $P5_INIT/rdopt-msh-q$1.pt --crop 256 --batch 2 --scales 1 0.5 0.25 \
    --extra-data runs/photos/train --source-weights 0.35 0.1 0.55 --color-augment 0.5 --scale-floor-weight 0.1 \
    --export $S/p5-q$1.pt
}
(phase5 4 6000; phase5 6 6000; phase5 2 4000) & qa=$!
(phase5 3 6000; phase5 5 6000) & qb=$!
wait $qa; wait $qb
cp $S/p5-*.log.jsonl benchmarks/train/logs/
