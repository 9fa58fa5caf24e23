#!/usr/bin/env bash
# rdopt-scc (the space-channel context model grown from rdopt-msh) on the six full-size evaluation photos,
# qualities 2-6, real .rdo files: amortized, and SGA at the budget the targets name (500 steps, budget schedule,
# Adam lr 0.03 with cosine decay: the settings rdopt-msh's run_sga_full.sh chose on training images). BD-rate
# against JPEG / WebP / AVIF (Pillow curves of `rdopt demo`, benchmarks/codec/demo/classic.json) and against
# rdopt-msh's amortized and SGA curves (sga_full.json, same photos).
#   WEIGHTS=runs/train bash benchmarks/codec/run_scc.sh     # weights not shipped yet: rdopt-scc-qQ.pt from there
# Resumable (finished entries are kept); amortized first, so its table exists long before SGA's.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=benchmarks/codec
CK=()
if [ -n "${WEIGHTS:-}" ]; then
  for q in 2 3 4 5 6; do CK+=(--checkpoint-of "$q=$WEIGHTS/rdopt-scc-q$q.pt"); done
fi
COMMON=(eval-set --model rdopt-scc "${CK[@]}" --qualities 2,3,4,5,6 --steps ${STEPS:-500} --lr 0.03 --schedule budget
        --lr-decay cosine --batch 1 --quiet --redo-stale)
OMP_NUM_THREADS=2 .venv/bin/rdopt eval images "${COMMON[@]}" --methods amortized --out $B/scc_amortized.json
.venv/bin/python $B/vs_classic.py $B/scc_amortized.json $B/demo/classic.json --versus $B/sga_full.json | tee $B/scc_amortized.txt
OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node=2 -m rdopt eval images "${COMMON[@]}" \
  --methods amortized,sga --out $B/scc_full.json
.venv/bin/python $B/vs_classic.py $B/scc_full.json $B/demo/classic.json --versus $B/sga_full.json \
  --plot $B/scc_full.png | tee $B/scc_full.txt
.venv/bin/rdopt report $B/scc_full.json | tee $B/scc_full.report.txt
