#!/usr/bin/env bash
# The embedded video codec rdopt-video q1-q4 (λ 256/512/1024/2048 on MSE of [0,1] RGB).
# Resumable: rerun to continue (each stage resumes from its state file; finished stages are skipped).
# Data: bigbuckbunny (every 1st/2nd frame, halved to 640×360) and synthetic camera motion (pan ≤ 6 px/frame, zoom,
# small rotation) over the scikit-image training photos and the Debian wallpaper photos (fetch_photos.py, training
# side only; the evaluation photos are refused by name). I-frame = the shipped embedded image model (frozen).
# Stage 1, pairs: two bases from scratch, λ=512 and λ=2048, 128² crops, batch 4, lr 3e-4, warm-up β=1 on the
#   prediction MSE for the first 1500 steps (DVC trains its motion part on the warp loss first).
# Stage 2, unrolled: clips of 5 frames (4 P-frames through the codec's own references), batch 2, lr 1e-4, 1200 steps,
#   each quality fine-tuned from the nearest base (q1, q2 from the 512 base; q3, q4 from the 2048 base).
# Two queues, one thread each. Exports go to runs/train/video-q*.pt; ship with
#   cp runs/train/video-qQ.pt src/rdopt/codecs/weights/rdopt-video-qQ.pt
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
S=runs/train
mkdir -p "$S"
.venv/bin/python benchmarks/train/fetch_photos.py runs/photos
STEPS1=${STEPS1:-6000}
STEPS2=${STEPS2:-1200}
base() {  # λ
  [ -f $S/video-base$1.pt ] && return 0
  $RD train --video --lmbda $1 --out $S/video-base$1.state.pt --steps $STEPS1 --batch 4 --crop 128 --frames 2 \
    --lr 3e-4 --prediction-weight 1 --prediction-steps 1500 --extra-data runs/photos/train --seed 7 --threads 1 \
    --export $S/video-base$1.pt
}
unrolled() {  # quality, base λ
  [ -f $S/video-q$1.pt ] && return 0
  $RD train --video --quality $1 --init $S/video-base$2.pt --out $S/video-q$1.state.pt --steps $STEPS2 --batch 2 \
    --crop 128 --frames 5 --lr 1e-4 --extra-data runs/photos/train --seed $((70 + $1)) --threads 1 \
    --export $S/video-q$1.pt
}
(base 512; unrolled 2 512; unrolled 1 512) > $S/video-queue-a.log 2>&1 & qa=$!
(base 2048; unrolled 3 2048; unrolled 4 2048) > $S/video-queue-b.log 2>&1 & qb=$!
wait $qa; wait $qb
mkdir -p benchmarks/train/logs
cp $S/video-*.log.jsonl benchmarks/train/logs/
