"""``rdopt train``: one training loop (:func:`train`) for every model rdopt trains.

What is trained, on which data and for which objective is a *task* (:class:`TrainTask`): the image
task trains a hyperprior with an image objective (the single-sample ELBO by default) on random crops;
the video task trains the P-frame codec with the GoP-unrolled objective on clips. The loop owns what
is common: Adam with a cosine learning-rate tail, gradient clipping, CompressAI's auxiliary quantile
loss, atomic checkpoints (every ``checkpoint_every`` steps, on Ctrl-C and on SIGTERM) and resuming,
the JSON-lines log and the progress bar, and the export of the shipped weights at the end.
"""

from .config import DEFAULT_SCALES, TrainConfig

# Imported on first use (PEP 562), so that ``rdopt train --help`` reads TrainConfig's defaults without torch.
_LAZY = {"ColorJitter": "image", "CropSampler": "image", "ImageTask": "image", "TrainTask": "loop",
         "make_task": "loop", "train": "loop", "VideoTask": "video"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "DEFAULT_SCALES", "ColorJitter", "CropSampler", "ImageTask", "VideoTask", "TrainTask",
           "make_task", "train"]
