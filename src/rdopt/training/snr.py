"""Gradient signal-to-noise ratio per parameter group (MS-NIC Table 3; Rainforth et al. 2018).

For every scalar parameter θ_p, over ``n`` mini-batches at fixed weights, ``SNR_p = |mean(g_p)| /
std(g_p)`` of its gradient (std with Bessel's correction); a group's SNR is the mean of ``SNR_p`` over
its parameters whose gradient varies (``std > 0``). Each objective sees the same mini-batches and
generator seeds, so objectives are compared on common data."""

from __future__ import annotations

import torch


def gradient_snr(model, module: torch.nn.Module, groups: dict[str, list[tuple[str, torch.nn.Parameter]]],
                 objectives: dict[str, object], batches: list[torch.Tensor], seed: int = 0) -> dict[str, dict[str, float]]:
    """``{objective label: {group: SNR}}`` of the gradient of each objective's mean loss.

    ``model`` is what the objectives take (the codec), ``module`` the network whose parameters the
    groups name; the weights are not changed (gradients are zeroed before and after)."""
    if len(batches) < 2:
        raise ValueError("the gradient SNR needs at least 2 mini-batches")
    out: dict[str, dict[str, float]] = {}
    was_training = module.training
    module.train()
    try:
        for label, objective in objectives.items():
            sums: dict[str, torch.Tensor] = {}
            squares: dict[str, torch.Tensor] = {}
            for i, x in enumerate(batches):
                module.zero_grad(set_to_none=True)
                gen = torch.Generator(device=x.device).manual_seed(seed + i)
                loss = objective(model, x, gen).loss.mean()
                loss.backward()
                for g, params in groups.items():
                    vec = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten()
                                     for _, p in params]).double()
                    sums[g] = sums.get(g, 0) + vec
                    squares[g] = squares.get(g, 0) + vec * vec
            n = len(batches)
            snr = {}
            for g in groups:
                mean = sums[g] / n
                var = ((squares[g] - n * mean * mean) / (n - 1)).clamp_min(0)
                std = var.sqrt()
                ok = std > 1e-30 * (mean.abs().max() + 1e-300)
                snr[g] = float((mean.abs()[ok] / std[ok]).mean()) if bool(ok.any()) else float("nan")
            out[label] = snr
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return out


__all__ = ["gradient_snr"]
