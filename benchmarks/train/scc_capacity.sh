#!/usr/bin/env bash
# Capacity of rdopt-scc, chosen on training photos (never the evaluation photos): rdopt-msh q3 widened to N filters
# (function-preserving, rdopt.codecs.image.widen) and grown into rdopt-scc, then trained with train_scc.sh's recipe
# (mixed quantization, lr 1e-4) for SCC_AB_STEPS steps (default 1500, the settings runs' budget), one thread; the
# amortized R-D of each export on the six 512×384 training crops of scc_settings.sh — to compare with
# scc_settings/mixed-1e4 (N=64, same steps and seed) and the training speed (steps/s, in the logs).
#   bash benchmarks/train/scc_capacity.sh 96 128      # N values, run one after the other
# Resumable (rerun to continue). Results: runs/scc_settings/wide-N.json and the summary printed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/train/scc_ab.sh
for n in "$@"; do
  run wide-$n mixed 1e-4 --channels $n 192
done
summary
