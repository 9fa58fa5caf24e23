# Sourced by scc_settings.sh and scc_capacity.sh: the A/B protocol of rdopt-scc's settings on training photos.
# The six 512×384 training-side wallpaper crops (runs/scc_settings/photos), and
#   run NAME QUANTIZATION LR [TRAIN ARGS…]: rdopt-msh q3 grown into rdopt-scc (extra `rdopt train` arguments, e.g.
#     --channels N M), trained SCC_AB_STEPS steps (default 1500) with train_scc.sh's recipe and seed, then the
#     amortized R-D of the export on the crops (runs/scc_settings/NAME.json); resumable;
#   summary: every result of runs/scc_settings.
RD=".venv/bin/rdopt"
O=runs/scc_settings
mkdir -p $O/photos
[ -d runs/photos/train ] || .venv/bin/python benchmarks/train/fetch_photos.py runs/photos
for p in BytheWater ColdRipple Kite Path EveningGlow FallenLeaf; do
  [ -f $O/photos/$p.png ] || cp runs/photos/train/$p.png $O/photos/
done
run() {  # name quantization lr [train args…]
  local name=$1 quantization=$2 lr=$3
  shift 3
  [ -f $O/$name.pt ] || $RD train --architecture rdopt-scc --init src/rdopt/codecs/weights/rdopt-msh-q3.pt --quality 3 \
    "$@" --out $O/$name.state.pt --steps ${SCC_AB_STEPS:-1500} --lr $lr --seed 93 --threads 1 --crop 256 --batch 2 \
    --scales 1 0.5 0.25 --extra-data runs/photos/train --source-weights 0.35 0.1 0.55 --color-augment 0.5 \
    --scale-floor-weight 0.1 --quantization $quantization --export $O/$name.pt > $O/$name.train.log 2>&1
  [ -f $O/$name.json ] || OMP_NUM_THREADS=1 $RD eval images $O/photos --crop 512x384 --methods amortized --qualities 3 \
    --model rdopt-scc --checkpoint-of 3=$O/$name.pt --out $O/$name.json --quiet
}
summary() {
  .venv/bin/python - <<'PY'
import json, pathlib
for f in sorted(pathlib.Path("runs/scc_settings").glob("*.json")):
    r = json.loads(f.read_text())["results"]
    print(f"{f.stem:12s} bpp {r['bpp'][0]:.4f}  PSNR {r['psnr-rgb'][0]:.3f}  R-D cost {r['rd_cost'][0]:.4f}")
PY
}
