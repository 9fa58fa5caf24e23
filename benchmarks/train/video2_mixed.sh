#!/usr/bin/env bash
# rdopt-video2, second training phase: each shipped P-frame codec fine-tuned with the residual latent under mixed
# quantization (the synthesis sees it rounded straight through; the motion and hyper-latents keep uniform noise; the
# shipped run measured the residual's rate at the rounded values too — MeanScaleLatent took the rate at noisy values,
# as rdopt.relax.rounding.mixed intends, only from 2026-12-05 on, after these weights shipped) by the GoP-unrolled objective of the joint stage: 2000 steps, batch 2 of 4-frame
# 128² clips of the training sources (bigbuckbunny, synthetic camera motion over the training photos), Adam lr 1e-5
# (fresh moments), the I-frame frozen. The setting was chosen by benchmarks/video/pframe_prior_probe.py on held-out
# training-source clips (benchmarks/video/v2/README.md). Exports runs/v2m/rdopt-video2-qQ.pt with the shipped file's
# meta; shipping = copying them to src/rdopt/codecs/weights/ after the check on the training clip, and the run's
# record (runs/v2m/qQ.json: settings, log, held-out evaluation) to benchmarks/train/state/video2-mixed-qQ.json, which
# marks the quality as done.
# Resumable (each run checkpoints every 100 steps and on Ctrl-C; rerun to continue). Two queues, one thread each.
#   bash benchmarks/train/video2_mixed.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
O=runs/v2m
mkdir -p $O
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
run() {
  for q in "$@"; do
    [ -f $O/rdopt-video2-q$q.pt ] && continue
    # shipped already (its record committed): the shipped file is the phase-2 export, a rerun would fine-tune it again
    [ -f benchmarks/train/state/video2-mixed-q$q.json ] && continue
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/pframe_prior_probe.py --variant control --y-relax mixed \
      --quality $q --steps 2000 --state $O/q$q.state.pt --export $O/rdopt-video2-q$q.pt --out $O/q$q.json > $O/q$q.log 2>&1
  done
}
run 2 3 &
run 1 4 &
wait
