"""Bit-for-bit reproducible CPU computation: :func:`pinned` runs a block on one thread with PyTorch's
deterministic algorithms, so reductions (convolutions, sums) run in one order and two processes compute the same
floating-point values — the encoder and decoder of lossy bits-back coding (:mod:`rdopt.infer.bitsback`,
:mod:`rdopt.codecs.image.bitsback`)."""

from __future__ import annotations

import contextlib

import torch

PINNED_THREADS = 1


@contextlib.contextmanager
def pinned():
    """One thread, deterministic algorithms (restored on exit)."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(PINNED_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


__all__ = ["PINNED_THREADS", "pinned"]
