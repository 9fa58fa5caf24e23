#!/usr/bin/env bash
# Benchmark of GoP bit allocation on rdopt-video, carphone_pristine.mp4.
# CPU budget (2 cores, no GPU): the paper's K (2000 I / 400 per P latent) costs hours per GoP here, so this
# runs a reduced protocol, stated in every output: the first $FRAMES frames (one GoP of 10), a centre crop
# of $CROP×$CROP, K = $KI for the I-frame and $KP per P-frame latent (the paper's 5:1 ratio), BAO with $KI
# joint steps (the paper's BAO budget = its I-frame K), OEU $KP encoder steps, Adam with the lr chosen on
# bigbuckbunny (tune_alloc.py; the paper's 1e-3 is for K = 400), SGA with the temperature fitted to each
# stage's budget. Two queues, one thread each. Resumable (finished GoPs are kept).
#   bash benchmarks/video/run_allocation.sh
# CODEC=rdopt-video2 runs the same protocol on that codec (results in alloc2/ and allocation2.txt); MAIN_ONLY=1 runs
# the main table only; TAG=name keeps a run with other budgets apart (alloc2_name/, allocation2_name.txt).
# The paper's budget on rdopt-video2, one GoP × 4 λ (hours per GoP and λ for sequential and BAO; the units folder
# keeps every finished SAVI stage and, once a minute, the state of the stage under way, so a run cut by the end of a
# session resumes there — commit benchmarks/video/alloc2_paper/ to carry it to the next machine):
#   CODEC=rdopt-video2 MAIN_ONLY=1 TAG=paper KI=2000 KP=400 LR=0.001 \
#     METHODS=amortized,lambda-domain,oeu,sequential,bao,windowed bash benchmarks/video/run_allocation.sh
# (the cheap methods first, so that a run cut by a session's end has their rows already)
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/video/jobs.sh
export OMP_NUM_THREADS=1
RD=.venv/bin/rdopt
CODEC=${CODEC:-rdopt-video}
SUFFIX=${CODEC#rdopt-video}
B=benchmarks/video/alloc$SUFFIX${TAG:+_$TAG}
mkdir -p $B
FRAMES=${FRAMES:-10}; CROP=${CROP:-128}; KI=${KI:-60}; KP=${KP:-12}; LR=${LR:-0.05}; OEU_LR=${OEU_LR:-0.0001}
QUALITIES=${QUALITIES:-"2 3 1 4"}
C="carphone --codec $CODEC --frames $FRAMES --crop $CROP --gop 10 --steps-i $KI --steps-p $KP --lr $LR --threads 1 --quiet"
# METHODS= sets the main table's methods and their order (each GoP runs them in this order)
ALL=${METHODS:-amortized,sequential,windowed,bao,lambda-domain,oeu}
# main table: every method at the four λ, one results file per quality (two queues)
set -- $QUALITIES
while [ $# -gt 0 ]; do
  $RD eval video $C --qualities $1 --methods $ALL --oeu-steps $KP --oeu-lr $OEU_LR --out $B/main_q$1.json > /dev/null &
  [ $# -gt 1 ] && $RD eval video $C --qualities $2 --methods $ALL --oeu-steps $KP --oeu-lr $OEU_LR --out $B/main_q$2.json > /dev/null &
  waitall
  shift; [ $# -gt 0 ] && shift
done
if [ "${MAIN_ONLY:-0}" != 1 ]; then
# Table 3: which latents (quality 3) | K sweep of the P-frame latents (sequential, quality 3)
$RD eval video $C --qualities 3 --methods amortized,bao,sequential --latents y --out $B/lat_y.json > /dev/null &
$RD eval video $C --qualities 3 --methods amortized,bao,sequential --latents w --out $B/lat_w.json > /dev/null &
waitall
for kp in 4 6 24; do
  $RD eval video carphone --codec $CODEC --frames $FRAMES --crop $CROP --gop 10 --steps-i $KI --steps-p $kp --lr $LR --threads 1 --quiet \
      --qualities 3 --methods amortized,sequential --out $B/k$kp.json > /dev/null &
  [ $kp = 6 ] && waitall
done
# exact vs sequential vs bao on a 2-frame GoP of 64×64 crops; time and peak memory per method and GoP size
.venv/bin/python benchmarks/video/alloc_small.py --out $B/small.json --quality 3 --codec $CODEC &
waitall
fi
.venv/bin/python benchmarks/video/alloc_summary.py --dir $B --frames $FRAMES --crop $CROP --ki $KI --kp $KP --lr $LR \
    > benchmarks/video/allocation$SUFFIX${TAG:+_$TAG}.txt
cat benchmarks/video/allocation$SUFFIX${TAG:+_$TAG}.txt
