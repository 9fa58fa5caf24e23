#!/usr/bin/env bash
# Settings of rdopt-scc chosen on training photos (never the evaluation photos): from rdopt-msh q3, the same recipe
# as train_scc.sh for SCC_AB_STEPS steps (default 1500) with each setting below (two at a time, one thread each),
# then the amortized R-D of each export and of rdopt-msh q3 on 512×384 centre crops of six training-side wallpaper
# photos (runs/photos/train; they are in the training pool, so this compares settings, not generalization).
#   noise-1e4   uniform noise everywhere, lr 1e-4
#   mixed-1e4   mixed quantization (straight-through values to the decoder and contexts), lr 1e-4
#   mixed-3e4   mixed quantization, lr 3e-4
# Resumable (rerun to continue). Results: runs/scc_settings/*.json and the summary printed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/train/scc_ab.sh
(run noise-1e4 noise 1e-4; run mixed-3e4 mixed 3e-4) &
(run mixed-1e4 mixed 1e-4; [ -f $O/msh.json ] || OMP_NUM_THREADS=1 $RD eval images $O/photos --model rdopt-msh --crop 512x384 --methods amortized \
  --qualities 3 --out $O/msh.json --quiet) &
wait
summary
