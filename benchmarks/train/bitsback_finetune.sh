#!/usr/bin/env bash
# The shipped rdopt-msh-bb-q2..q6: the lossy bits-back variant of each shipped rdopt-msh-qQ, fine-tuned with
# the bits-back NELBO on the *hyper path only* (--freeze g_a g_s: h_a now gives μz and log σz², h_s and the flexible
# prior p(z) adapt; the analysis and synthesis transforms keep the base model's weights, so ŷ's decoder is the base
# model's). 3000 steps, batch 8, 128² crops, lr 3e-4 (last 20 % decaying to 3e-5), the phase-5 data mix
# (bigbuckbunny / scikit-image / the wallpaper photos of fetch_photos.py, 0.35 / 0.1 / 0.55), one thread:
# ≈ 8-10 min per quality on a shared CPU core.
#
#   benchmarks/train/bitsback_finetune.sh 2 3 4 5 6      # then copy runs/bb2/rdopt-msh-bb-qQ.pt to src/rdopt/codecs/weights
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
mkdir -p runs/bb2
for q in "$@"; do
  .venv/bin/rdopt train --objective bits-back --init src/rdopt/codecs/weights/rdopt-msh-q$q.pt --quality $q --steps 3000 \
    --batch 8 --crop 128 --lr 3e-4 --threads 1 --freeze g_a g_s --extra-data runs/photos/train \
    --source-weights 0.35 0.1 0.55 --seed $((90 + q)) --log-every 100 \
    --out runs/bb2/ft-q$q.state.pt --export runs/bb2/rdopt-msh-bb-q$q.pt
done
