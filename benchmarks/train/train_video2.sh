#!/usr/bin/env bash
# rdopt-video2 pre-training, resumable across sessions (each call runs until its step budget or until it is
# stopped; rerun to continue). Two queues, one thread each:
#   A  motion coder: pairs/triples at 192², batch 8, λ 0.013 on the warp, supervised coarse-flow term γ=20 for the
#      first 8000 steps (DIS targets), 20000 steps.
#   B  conditional residual coders q1..q4 (λ 0.0067 0.013 0.025 0.0483), each grown from rdopt-msh of the same λ,
#      pairs at 128², batch 8, 4000 steps, prediction = warp of the decoded reference by 8×8-averaged DIS flow.
# Data: bigbuckbunny (frame steps 1-3), synthetic camera motion over the scikit-image training photos and the
# Debian wallpaper photos (fetch_photos.py, training side only), 30 % of them with a moving foreground layer.
# Carry-over: `train_video2.sh save` writes slim float16 states (no optimizer moments) to benchmarks/train/state/
# for committing; a fresh machine restores them from there before resuming.
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
S=runs/train
K=benchmarks/train/state
mkdir -p "$S" "$K"
STAGES="motion res1 res2 res3 res4"
if [ "${1:-}" = "save" ]; then
  for n in $STAGES; do
    [ -f $S/video2-$n.state.pt ] || continue
    .venv/bin/python -c "from rdopt.training.loop import slim_state as s; import sys; print('$n', s(sys.argv[1], sys.argv[2]))" \
      $S/video2-$n.state.pt $K/video2-$n.state.pt
    cp $S/video2-$n.state.log.jsonl $K/ 2>/dev/null || true
  done
  exit 0
fi
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
for n in $STAGES; do  # restore the committed states on a fresh machine
  if [ ! -f $S/video2-$n.state.pt ] && [ -f $K/video2-$n.state.pt ]; then
    cp $K/video2-$n.state.pt $S/; cp $K/video2-$n.state.log.jsonl $S/ 2>/dev/null || true
  fi
done
COMMON="--video --architecture rdopt-video2 --extra-data runs/photos/train --layer-share 0.3 --threads 1"
stage() {  # name: train it unless exported already or trained by the other queue right now (flock)
  local n=$1
  [ -f $S/video2-$n.pt ] && return 0
  exec 9>$S/video2-$n.lock
  flock -n 9 || { exec 9>&-; return 0; }
  case $n in
    motion)
      $RD train $COMMON --stage motion --lmbda 0.013 --out $S/video2-motion.state.pt --steps ${MOTION_STEPS:-20000} \
        --batch 8 --crop 192 --lr 3e-4 --flow-weight 20 --flow-steps 8000 --seed 21 --export $S/video2-motion.pt ;;
    res[1-4])
      q=${n#res}
      $RD train $COMMON --stage residual --quality $q --out $S/video2-$n.state.pt --steps ${RESIDUAL_STEPS:-4000} \
        --batch 8 --crop 128 --lr 1e-4 --seed $((30 + q)) --export $S/video2-$n.pt ;;
  esac
  exec 9>&-
}
queue() { for n in "$@"; do stage $n; done; }
# stop with: pkill -TERM -f 'rdopt train' (each run checkpoints on SIGTERM); rerun to continue
(queue motion res4 res3 res2 res1) >> $S/video2-queue-a.log 2>&1 &
(queue res1 res2 res3 res4 motion) >> $S/video2-queue-b.log 2>&1 &
wait
