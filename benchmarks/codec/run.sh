#!/usr/bin/env bash
# Foundation benchmark: the embedded models with the amortized encoder on 512×384 center crops of the
# evaluation photos (real .rdo files): real vs estimated rate, encode/decode times; and the full-image
# R-D comparison with JPEG / WebP / AVIF (the `rdopt demo` run, whose output is kept here).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -f benchmarks/codec/amortized_512x384*.json
# chelsea (451×300) is smaller than 512×384: the other five evaluation photos are used.
IMGS=$(.venv/bin/python -c "from rdopt.data.sources import eval_image_paths; print(' '.join(str(p) for p in eval_image_paths() if 'chelsea' not in p.name))")
.venv/bin/rdopt eval images $IMGS --model rdopt-msh --crop 512x384 --methods amortized --qualities 2,3,4,5,6 --batch 1 \
  --quiet --out benchmarks/codec/amortized_512x384.json
.venv/bin/python benchmarks/codec/overhead.py benchmarks/codec/amortized_512x384.json | tee benchmarks/codec/overhead_512x384.txt
.venv/bin/rdopt demo --out benchmarks/codec/demo | tee benchmarks/codec/demo.txt
