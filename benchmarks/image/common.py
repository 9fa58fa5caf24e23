"""Shared set-up of the image benchmarks: the embedded model and a batch of evaluation-photo crops."""

from __future__ import annotations

import torch

from rdopt.codecs.image.loading import load_model
from rdopt.data.images import to_batch
from rdopt.eval.images import collect_images, parse_crop


def setup(quality: int, crop: str, images: int, threads: int, source: str = "eval-set"):
    """Returns (model, images, padded batch tensor). ``source``: ``eval-set`` (the evaluation photos) or a
    folder of images — choose optimizer settings on training images, never on the evaluation photos."""
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model("rdopt-msh", quality, device=device)
    ims = collect_images([source], parse_crop(crop))[:images]
    return model, ims, to_batch([im.image.rgb for im in ims], model.pad_multiple, device)
