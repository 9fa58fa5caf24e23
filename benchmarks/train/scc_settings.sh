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
RD=".venv/bin/rdopt"
O=runs/scc_settings
mkdir -p $O/photos
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
for p in BytheWater ColdRipple Kite Path EveningGlow FallenLeaf; do
  [ -f $O/photos/$p.png ] || cp runs/photos/train/$p.png $O/photos/
done
run() {  # name quantization lr
  [ -f $O/$1.pt ] || $RD train --architecture rdopt-scc --init src/rdopt/codecs/weights/rdopt-msh-q3.pt --quality 3 \
    --out $O/$1.state.pt --steps ${SCC_AB_STEPS:-1500} --lr $3 --seed 93 --threads 1 --crop 256 --batch 2 \
    --scales 1 0.5 0.25 --extra-data runs/photos/train --source-weights 0.35 0.1 0.55 --color-augment 0.5 \
    --scale-floor-weight 0.1 --quantization $2 --export $O/$1.pt > $O/$1.train.log 2>&1
  [ -f $O/$1.json ] || OMP_NUM_THREADS=1 $RD eval images $O/photos --crop 512x384 --methods amortized --qualities 3 --model rdopt-scc \
    --checkpoint-of 3=$O/$1.pt --out $O/$1.json --quiet
}
(run noise-1e4 noise 1e-4; run mixed-3e4 mixed 3e-4) &
(run mixed-1e4 mixed 1e-4; [ -f $O/msh.json ] || OMP_NUM_THREADS=1 $RD eval images $O/photos --model rdopt-msh --crop 512x384 --methods amortized \
  --qualities 3 --out $O/msh.json --quiet) &
wait
.venv/bin/python - <<'PY'
import json, pathlib
for f in sorted(pathlib.Path("runs/scc_settings").glob("*.json")):
    r = json.loads(f.read_text())["results"]
    print(f"{f.stem:12s} bpp {r['bpp'][0]:.4f}  PSNR {r['psnr-rgb'][0]:.3f}  R-D cost {r['rd_cost'][0]:.4f}")
PY
