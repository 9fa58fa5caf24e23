#!/usr/bin/env bash
# rdopt-scc: the shipped rdopt-msh-qQ grown into a space-channel context model (rdopt.codecs.image.scc: channel groups
# × checkerboard, context terms born at zero so training starts from rdopt-msh's exact R-D point), then trained end to
# end with the phase-5 recipe of rdopt-msh (phase5_photos.sh): 256² crops in batches of 2 at scales 1, 1/2, 1/4 drawn
# 35 % from bigbuckbunny, 10 % from the scikit-image training photos and 55 % from the Debian wallpaper photos
# (fetch_photos.py, training side only), half of them colour-jittered, scale-floor penalty 0.1; lr 1e-4; the ELBO with
# ${SCC_QUANTIZATION:-mixed} quantization (mixed: the decoder's and the contexts' values rounded straight through, the
# rate of noisy ones, as CompressAI trains its latent codecs; to be confirmed against noise on training photos).
# Resumable: each call runs until its step budget or until stopped; rerun to continue. Two queues, one thread each.
# Carry-over: `train_scc.sh save` writes slim float16 states to benchmarks/train/state/ for committing; a fresh machine
# restores them before resuming. Exports: runs/train/rdopt-scc-qQ.pt (shipped after the stress and R-D checks).
# Second phase (SCC_PHASE=2): every quality starts from its shipped phase-1 weights (fresh Adam moments, lr back at 1e-4,
# other crops: seed 190 + q) for ${SCC_STEPS:-6000} more steps of the same recipe, run scc2-qQ, exported to
# runs/train/rdopt-scc2-qQ.pt; the shipped files stay until the exports pass the same checks.
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
S=runs/train
K=benchmarks/train/state
W=src/rdopt/codecs/weights
mkdir -p "$S" "$K"
QUALITIES="2 3 4 5 6"
PHASE=${SCC_PHASE:-1}
R=scc; E=rdopt-scc; INIT=rdopt-msh; SEED=90  # run name, export name, initial weights, seed base
[ "$PHASE" = 2 ] && { R=scc2; E=rdopt-scc2; INIT=rdopt-scc; SEED=190; }
if [ "${1:-}" = "save" ]; then
  for q in $QUALITIES; do
    n=$R-q$q
    [ -f $S/$n.state.pt ] || continue
    .venv/bin/python -c "from rdopt.training.loop import slim_state as s; import sys; print('$n', s(sys.argv[1], sys.argv[2]))" \
      $S/$n.state.pt $K/$n.state.pt
    cp $S/$n.state.log.jsonl $K/ 2>/dev/null || true
    [ -f $S/$E-q$q.pt ] && cp $S/$E-q$q.pt $K/
  done
  exit 0
fi
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
for q in $QUALITIES; do
  n=$R-q$q
  if [ ! -f $S/$n.state.pt ] && [ -f $K/$n.state.pt ]; then
    cp $K/$n.state.pt $S/; cp $K/$n.state.log.jsonl $S/ 2>/dev/null || true
  fi
  [ -f $S/$E-q$q.pt ] || [ ! -f $K/$E-q$q.pt ] || cp $K/$E-q$q.pt $S/
done
stage() {  # quality: train it unless shipped or exported already, or trained by the other queue right now (flock)
  local q=$1
  # phase 1 was shipped (2026-12-04): remove the file to train that quality again
  [ "$PHASE" = 1 ] && [ -f $W/rdopt-scc-q$q.pt ] && return 0
  [ -f $S/$E-q$q.pt ] && return 0
  exec 9>$S/$R-q$q.lock
  flock -n 9 || { exec 9>&-; return 0; }
  $RD train --architecture rdopt-scc --init $W/$INIT-q$q.pt --quality $q --out $S/$R-q$q.state.pt \
    --steps ${SCC_STEPS:-6000} --lr 1e-4 --seed $((SEED + q)) --threads 1 --crop 256 --batch 2 --scales 1 0.5 0.25 \
    --extra-data runs/photos/train --source-weights 0.35 0.1 0.55 --color-augment 0.5 --scale-floor-weight 0.1 \
    --quantization ${SCC_QUANTIZATION:-mixed} --export $S/$E-q$q.pt
  exec 9>&-
}
queue() { for q in "$@"; do stage $q; done; }
# stop with: pkill -TERM -f 'rdopt train' (each run checkpoints on SIGTERM); rerun to continue
(queue 3 5 2 4 6) >> $S/scc-queue-a.log 2>&1 &
(queue 4 6 2 3 5) >> $S/scc-queue-b.log 2>&1 &
wait
