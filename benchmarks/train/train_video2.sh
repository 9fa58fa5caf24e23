#!/usr/bin/env bash
# rdopt-video2 pre-training, resumable across sessions (each call runs until its step budget or until it is
# stopped; rerun to continue). Two queues, one thread each:
#   A  motion coder: pairs/triples at 192², batch 8, λ 0.013 on the warp, supervised coarse-flow term γ=20 for the
#      first 8000 steps (DIS targets), 20000 steps.
#   B  conditional residual coders q1..q4 (λ 0.0067 0.013 0.025 0.0483), each grown from rdopt-msh of the same λ,
#      pairs at 128², batch 8, 4000 steps, prediction = warp of the decoded reference by 8×8-averaged DIS flow.
#   then per quality Q, once the motion coder and residual Q are exported: the joint stage — the whole P-frame codec
#      (assembled from the two exports) end to end over unrolled clips of 4 frames (3 P-frames through the codec's own
#      references), 128², batch 2, lr 1e-4, 3000 steps; its export is shipped as rdopt-video2-qQ.pt by
#      `ship_video2.py runs/train Q` (which sets the I-frame quality of its meta).
# Data: bigbuckbunny (frame steps 1-3), synthetic camera motion over the scikit-image training photos and the
# Debian wallpaper photos (fetch_photos.py, training side only), 30 % of them with a moving foreground layer.
# Carry-over: `train_video2.sh save` writes slim float16 states (no optimizer moments) to benchmarks/train/state/
# for committing; a fresh machine restores them from there before resuming.
set -euo pipefail
cd "$(dirname "$0")/../.."
RD=".venv/bin/rdopt"
S=runs/train
K=benchmarks/train/state
W=src/rdopt/codecs/weights
mkdir -p "$S" "$K"
STAGES="motion res1 res2 res3 res4 joint1 joint2 joint3 joint4"
if [ "${1:-}" = "save" ]; then
  for n in $STAGES; do
    [ -f $S/video2-$n.state.pt ] || continue
    .venv/bin/python -c "from rdopt.training.loop import slim_state as s; import sys; print('$n', s(sys.argv[1], sys.argv[2]))" \
      $S/video2-$n.state.pt $K/video2-$n.state.pt
    cp $S/video2-$n.state.log.jsonl $K/ 2>/dev/null || true
    [ -f $S/video2-$n.pt ] && cp $S/video2-$n.pt $K/  # a finished stage's export (float16 weights)
  done
  exit 0
fi
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
for n in $STAGES; do  # restore the committed states on a fresh machine
  if [ ! -f $S/video2-$n.state.pt ] && [ -f $K/video2-$n.state.pt ]; then
    cp $K/video2-$n.state.pt $S/; cp $K/video2-$n.state.log.jsonl $S/ 2>/dev/null || true
  fi
  [ -f $S/video2-$n.pt ] || [ ! -f $K/video2-$n.pt ] || cp $K/video2-$n.pt $S/
done
for q in 1 2 3 4; do  # a shipped quality is a finished joint stage (ship_video2.py changes only its meta)
  [ -f $S/video2-joint$q.pt ] || [ ! -f $W/rdopt-video2-q$q.pt ] || cp $W/rdopt-video2-q$q.pt $S/video2-joint$q.pt
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
    joint[1-4])
      q=${n#joint}
      { [ -f $S/video2-motion.pt ] && [ -f $S/video2-res$q.pt ]; } || { exec 9>&-; return 0; }
      [ -f $S/video2-init$q.pt ] || .venv/bin/python -c "from rdopt.codecs.video.video2 import assemble, VIDEO2_LAMBDAS, VIDEO2_IFRAME_QUALITY as I; import sys; q=int(sys.argv[1]); assemble(sys.argv[2], sys.argv[3], sys.argv[4], meta={'lmbda': VIDEO2_LAMBDAS[q], 'iframe_quality': I[q]})" \
        $q $S/video2-motion.pt $S/video2-res$q.pt $S/video2-init$q.pt
      $RD train $COMMON --stage joint --quality $q --init $S/video2-init$q.pt --out $S/video2-$n.state.pt \
        --steps ${JOINT_STEPS:-3000} --frames 4 --batch 2 --crop 128 --lr 1e-4 --seed $((40 + q)) --export $S/video2-$n.pt ;;
    res[1-4])
      q=${n#res}
      [ -f $S/video2-joint$q.pt ] && { exec 9>&-; return 0; }  # its joint stage is done: not needed any more
      $RD train $COMMON --stage residual --quality $q --out $S/video2-$n.state.pt --steps ${RESIDUAL_STEPS:-4000} \
        --batch 8 --crop 128 --lr 1e-4 --seed $((30 + q)) --export $S/video2-$n.pt ;;
  esac
  exec 9>&-
}
queue() { for n in "$@"; do stage $n; done; }
# stop with: pkill -TERM -f 'rdopt train' (each run checkpoints on SIGTERM); rerun to continue
(queue motion res4 res3 res2 res1 joint4 joint3 joint2 joint1) >> $S/video2-queue-a.log 2>&1 &
(queue res1 res2 res3 res4 motion joint1 joint2 joint3 joint4) >> $S/video2-queue-b.log 2>&1 &
wait
