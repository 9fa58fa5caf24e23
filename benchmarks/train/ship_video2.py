"""Ship rdopt-video2's joint-stage exports (benchmarks/train/train_video2.sh) as the embedded weights
``src/rdopt/codecs/weights/rdopt-video2-qQ.pt``: the same tensors, with the meta the loader reads — the λ of the
quality (``VIDEO2_LAMBDAS``) and the embedded image model's quality for its I-frames (``VIDEO2_IFRAME_QUALITY``).
Checks that the shipped file loads as the registered codec with the export's P-frame weights.

    .venv/bin/python benchmarks/train/ship_video2.py runs/train 1 2 3 4
"""

import hashlib
import sys
from pathlib import Path

import torch

from rdopt.codecs.video.gop import state_hash
from rdopt.codecs.video.video2 import VIDEO2_IFRAME_QUALITY, VIDEO2_LAMBDAS, load_video2, weights_path


def pframe_hash(codec) -> str:
    h = hashlib.sha256()
    state_hash(codec.pframe, h)
    return h.hexdigest()[:16]


src = Path(sys.argv[1])
for q in map(int, sys.argv[2:]):
    export = src / f"video2-joint{q}.pt"
    raw = torch.load(export, map_location="cpu", weights_only=True)
    raw["meta"] = dict(raw.get("meta") or {}) | {"lmbda": VIDEO2_LAMBDAS[q], "iframe_quality": VIDEO2_IFRAME_QUALITY[q]}
    out = weights_path(q)
    torch.save(raw, out)
    shipped, trained = load_video2(q), load_video2(checkpoint=export)
    assert pframe_hash(shipped) == pframe_hash(trained), "the shipped P-frame weights differ"
    assert shipped.lmbda == VIDEO2_LAMBDAS[q]
    print(f"q{q}: {export} -> {out} ({out.stat().st_size} B), λ {shipped.lmbda}, I-frames at image quality "
          f"{VIDEO2_IFRAME_QUALITY[q]}, P-frame state hash {pframe_hash(shipped)}, codec hash {shipped.weight_hash().hex()}")
