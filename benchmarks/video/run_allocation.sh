#!/usr/bin/env bash
# Issue #8 (tracker #19), deliverable 4: GoP bit allocation on rdopt-video, carphone_pristine.mp4.
# CPU budget (2 cores, no GPU): the paper's K (2000 I / 400 per P latent) costs hours per GoP here, so this
# runs a reduced protocol, stated in every output: the first $FRAMES frames (one GoP of 10), a centre crop
# of $CROP×$CROP, K = $KI for the I-frame and $KP per P-frame latent (the paper's 5:1 ratio), BAO with $KI
# joint steps (the paper's BAO budget = its I-frame K), OEU $KP encoder steps, Adam lr 1e-3, SGA with the
# temperature fitted to each stage's budget. Two queues, one thread each. Resumable.
#   bash benchmarks/video/run_allocation.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
RD=.venv/bin/rdopt
B=benchmarks/video/alloc
mkdir -p $B
FRAMES=${FRAMES:-10}; CROP=${CROP:-128}; KI=${KI:-100}; KP=${KP:-20}
C="carphone --frames $FRAMES --crop $CROP --gop 10 --steps-i $KI --steps-p $KP --threads 1 --quiet"
# main table: every method at the four λ
$RD eval video $C --methods amortized,sequential,lambda-domain --out $B/main_a.json > /dev/null &
$RD eval video $C --methods amortized,bao,windowed,oeu --oeu-steps $KP --out $B/main_b.json > /dev/null &
wait
# Table 3: which latents (quality 3)
$RD eval video $C --qualities 3 --methods amortized,bao,sequential --latents y --out $B/lat_y.json > /dev/null &
$RD eval video $C --qualities 3 --methods amortized,bao,sequential --latents w --out $B/lat_w.json > /dev/null &
wait
# K sweep of the P-frame latents (sequential, quality 3; K_P = $KP is in the main table)
for kp in 5 10 40; do
  $RD eval video carphone --frames $FRAMES --crop $CROP --gop 10 --steps-i $KI --steps-p $kp --threads 1 --quiet \
      --qualities 3 --methods sequential --out $B/k$kp.json > /dev/null &
  [ $kp = 10 ] && wait
done
wait
# exact vs sequential vs bao on a 2-frame GoP of 64×64 crops; time and peak memory per method and GoP size
.venv/bin/python benchmarks/video/alloc_small.py --out $B/small.json
.venv/bin/python benchmarks/video/alloc_summary.py --dir $B --frames $FRAMES --crop $CROP --ki $KI --kp $KP \
    > benchmarks/video/allocation.txt
cat benchmarks/video/allocation.txt
