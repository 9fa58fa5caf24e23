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
RD=".venv/bin/rdopt"
O=runs/scc_settings
mkdir -p $O/photos
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
for p in BytheWater ColdRipple Kite Path EveningGlow FallenLeaf; do
  [ -f $O/photos/$p.png ] || cp runs/photos/train/$p.png $O/photos/
done
for n in "$@"; do
  name=wide-$n
  [ -f $O/$name.pt ] || $RD train --architecture rdopt-scc --init src/rdopt/codecs/weights/rdopt-msh-q3.pt --quality 3 \
    --channels $n 192 --out $O/$name.state.pt --steps ${SCC_AB_STEPS:-1500} --lr 1e-4 --seed 93 --threads 1 --crop 256 \
    --batch 2 --scales 1 0.5 0.25 --extra-data runs/photos/train --source-weights 0.35 0.1 0.55 --color-augment 0.5 \
    --scale-floor-weight 0.1 --quantization mixed --export $O/$name.pt > $O/$name.train.log 2>&1
  [ -f $O/$name.json ] || OMP_NUM_THREADS=1 $RD eval images $O/photos --crop 512x384 --methods amortized --qualities 3 \
    --model rdopt-scc --checkpoint-of 3=$O/$name.pt --out $O/$name.json --quiet
done
.venv/bin/python - <<'PY'
import json, pathlib
for f in sorted(pathlib.Path("runs/scc_settings").glob("*.json")):
    r = json.loads(f.read_text())["results"]
    print(f"{f.stem:12s} bpp {r['bpp'][0]:.4f}  PSNR {r['psnr-rgb'][0]:.3f}  R-D cost {r['rd_cost'][0]:.4f}")
PY
