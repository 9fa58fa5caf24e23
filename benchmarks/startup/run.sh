#!/usr/bin/env bash
# Start-up cost of `rdopt info` and of a small amortized `rdopt encode`, and the peak memory of large
# encodes/decodes, as whole-process figures (GNU time). Compare two trees by pointing PYTHONPATH at each:
#   BEFORE=/path/to/old/src AFTER=src benchmarks/startup/run.sh
# Run from the repository root; RUNS runs per command after one warm-up (quote the median).
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-5}
AFTER=${AFTER:-src}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=1
PYTHONPATH=$AFTER "$PY" - "$W" <<'PY'
import sys
import numpy as np
from PIL import Image
sys.path.insert(0, "tests")
from conftest import pattern_image
Image.fromarray(pattern_image(128, 128)).save(f"{sys.argv[1]}/img128.png")
PY
PYTHONPATH=$AFTER "$PY" -m rdopt encode "$W/img128.png" -o "$W/a128.rdo" >/dev/null

measure() {  # label, tree, command...
  local label=$1 tree=$2; shift 2
  PYTHONPATH=$tree "$@" >/dev/null 2>&1 || true  # warm-up
  for i in $(seq "$RUNS"); do
    PYTHONPATH=$tree /usr/bin/time -f "$label wall %e s  user %U s  sys %S s  peak %M KB" "$@" 2>&1 >/dev/null | tail -1
  done
}
for tree in ${BEFORE:+"$BEFORE"} "$AFTER"; do
  echo "== $tree"
  measure "help  " "$tree" "$PY" -m rdopt --help
  measure "info  " "$tree" "$PY" -m rdopt info "$W/a128.rdo"
  measure "encode" "$tree" "$PY" -m rdopt encode "$W/img128.png" -o "$W/x.rdo"
done
echo "== floor: torch; CompressAI as rdopt imports it; CompressAI's stock import"
measure "import torch" "$AFTER" "$PY" -c "import torch"
measure "import rdopt.codecs + compressai" "$AFTER" "$PY" -W ignore -c "import rdopt.codecs, compressai.models, compressai.zoo.pretrained"
measure "import compressai (stock)" "$AFTER" "$PY" -W ignore -c "import compressai"
