"""Ship bits-back fine-tunes (benchmarks/train/bitsback_finetune.sh) as the embedded rdopt-msh-bb-qQ: slim files
without g_a / g_s (checked identical to rdopt-msh-qQ's, which the loader takes them from).

    .venv/bin/python benchmarks/train/ship_bitsback.py runs/bb2 2 3 4 5 6
"""

import sys
from pathlib import Path

from rdopt.codecs.image.bitsback import WEIGHTS_DIR, load_bitsback, net_from_state, save_bitsback
from rdopt.codecs.image.loading import read_state_dict

src = Path(sys.argv[1])
for q in map(int, sys.argv[2:]):
    full = src / f"rdopt-msh-bb-q{q}.pt"
    net = net_from_state(read_state_dict(full))
    out = WEIGHTS_DIR / f"rdopt-msh-bb-q{q}.pt"
    save_bitsback(net, out, shared_with=WEIGHTS_DIR / f"rdopt-msh-q{q}.pt")
    shipped = load_bitsback(q)
    ref = load_bitsback(checkpoint=full)
    assert shipped.weight_hash() == ref.weight_hash(), "the slim file does not assemble to the trained model"
    print(f"q{q}: {full} ({full.stat().st_size} B) -> {out} ({out.stat().st_size} B), weight hash "
          f"{shipped.weight_hash()[:8].hex()}")
