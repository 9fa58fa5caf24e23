"""Inference for lossy bits-back coding (paper 003, Alg. 1): the encoder's joint SGA + BBVI (line 2) and
``reproducible_bbvi`` (lines 3, 7, 9–10), written against the bits-back codec's methods only (no model
import: the codec is any object with ``posterior``, ``y_bits``, ``z_net_bits``, ``hyper_nelbo_bits``,
``synthesize``, ``fp64``).

**What is pinned so the decoder reproduces ``reproducible_bbvi`` bit for bit** (:func:`rdopt.core.determinism.pinned`):

* float64 everywhere (a float64 CPU copy of ``h_a``, ``h_s`` and the prior: ``codec.fp64()``);
* one CPU thread (``torch.set_num_threads(1)``), so reductions in convolutions and sums run in one order;
* ``torch.use_deterministic_algorithms(True)``;
* the optimizer is Adam written out here in a fixed sequence of elementwise float64 operations (not
  ``torch.optim``, whose foreach/fused code paths can change between versions);
* the Gaussian noise comes from a ``torch.Generator`` seeded with the first 8 bytes of SHA-256 of ŷ
  (int32, little-endian, with its shape), drawn in one fixed order.

Not pinned (outside a library's control): the CPU's vector instructions and the BLAS/PyTorch build
(``MKL_CBWR`` can pin MKL's code path if set before start-up). Any difference there shows up as a
side-information checksum mismatch at the decoder, never as silently wrong side information.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.determinism import pinned
from ..core.rd import Lambda, distortion_term
from ..relax.registry import relaxation_schedule
from .loop import optimize
from .options import SolverOptions


def seed_of(y_hat: Tensor | np.ndarray) -> int:
    """The seed of ``reproducible_bbvi``: the first 8 bytes (little-endian) of SHA-256 over ŷ's shape and
    its values as int32 little-endian, masked to 63 bits."""
    a = y_hat.detach().cpu().numpy() if isinstance(y_hat, Tensor) else np.asarray(y_hat)
    if not np.array_equal(a, np.round(a)):
        raise ValueError("reproducible_bbvi takes integer latents ŷ")
    h = hashlib.sha256(np.asarray(a.shape, dtype="<i8").tobytes())
    h.update(np.asarray(a, dtype="<i4").tobytes())
    return int.from_bytes(h.digest()[:8], "little") & ((1 << 63) - 1)


def reproducible_bbvi(codec, y_hat: Tensor, options: SolverOptions) -> tuple[Tensor, Tensor]:
    """Alg. 1 lines 9–10: q(z) for fixed ŷ, from ŷ alone. Initialize (μz, log σz²) = h_a(ŷ), then
    ``options.bbvi_steps`` steps of Adam (rate ``options.bbvi_lr``; paper 003 S3 uses 2000 steps at 3e-3, the
    default here is 300: the decoder pays for them) on the single-sample NELBO ``−log2 P(ŷ|z) − log2 p(z) − H[q]`` with
    ``z = μ + σ·ε`` (reparameterized), ε from a generator seeded by :func:`seed_of` (ŷ). Runs in float64 on
    one thread (:func:`pinned`). Returns (μz, σz) as float64 CPU tensors."""
    f = codec.fp64()
    y = y_hat.detach().cpu().to(torch.float64)
    gen = torch.Generator().manual_seed(seed_of(y))
    b1, b2, eps_adam = 0.9, 0.999, 1e-8
    with pinned(), torch.enable_grad():
        with torch.no_grad():
            mu, logvar = f.posterior(y)
        mu, logvar = mu.clone(), logvar.clone()
        m = [torch.zeros_like(mu), torch.zeros_like(logvar)]
        v = [torch.zeros_like(mu), torch.zeros_like(logvar)]
        for t in range(1, options.bbvi_steps + 1):
            eps = torch.randn(mu.shape, generator=gen, dtype=torch.float64)
            params = [mu.requires_grad_(True), logvar.requires_grad_(True)]
            loss = f.hyper_nelbo_bits(y, params[0], params[1], eps).sum()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                new = []
                for i, (p, g) in enumerate(zip(params, grads)):
                    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                    m[i] = b1 * m[i] + (1 - b1) * g
                    v[i] = b2 * v[i] + (1 - b2) * (g * g)
                    m_hat = m[i] / (1 - b1**t)
                    v_hat = v[i] / (1 - b2**t)
                    new.append(p.detach() - options.bbvi_lr * m_hat / (torch.sqrt(v_hat) + eps_adam))
                mu, logvar = new
        mu, logvar = mu.detach(), logvar.detach()
    return mu, torch.exp(0.5 * logvar)


@dataclass
class JointResult:
    y: Tensor  # continuous latents (best under the true objective); ŷ = round(y)
    mu: Tensor  # q(z) of the joint optimization (discarded by line 3, kept for diagnostics)
    logvar: Tensor
    initial_loss: Tensor  # (B,) true objective at the amortized start
    final_loss: Tensor
    steps: int
    seconds: float
    messages: list[str]


def nelbo_cost(codec, y_tilde: Tensor, mu: Tensor, logvar: Tensor, eps: Tensor, x: Tensor, lmbda: Lambda,
               visible: tuple[int, int]) -> Tensor:
    """Per item, ``(−log2 P(ỹ|z) − log2 p(z) − H[q]) / pixels + λ·255²·MSE`` with ``z = μ + σ·ε``: the
    relaxed R-D objective with the *net* rate (paper 003 §3.3)."""
    h, w = visible
    z = mu + torch.exp(0.5 * logvar) * eps
    bits = codec.y_bits(y_tilde, z) + codec.z_net_bits(z, logvar)
    x_hat = codec.synthesize(y_tilde)
    _, dist = distortion_term(x_hat[..., :h, :w], x[..., :h, :w], lmbda)
    return bits / (h * w) + dist


def sga_bbvi(codec, x: Tensor, lmbda: Lambda, visible: tuple[int, int], options: SolverOptions,
             true_samples: int = 4) -> JointResult:
    """Alg. 1 lines 1–2: initialize (μy; μz, log σz²) from the inference networks, then optimize y by SGA
    (``options``: temperature schedule, steps, lr) jointly with (μz, log σz²) by BBVI (one reparameterized
    Gaussian sample per step). The true objective the loop keeps the best point of uses ŷ = round(y) and a
    fixed set of ``true_samples`` noise draws (common random numbers, so it is deterministic)."""
    options = options.image()
    with torch.no_grad():
        y0 = codec.amortize(x)["y"]
        mu0, logvar0 = codec.posterior(y0)
    gen = torch.Generator(device=x.device).manual_seed(options.seed)
    fixed = [torch.randn(mu0.shape, generator=gen, device=x.device, dtype=mu0.dtype) for _ in range(true_samples)]

    def true(params):
        y, mu, logvar = params
        y_hat = torch.round(y)
        return torch.stack([nelbo_cost(codec, y_hat, mu, logvar, e, x, lmbda, visible) for e in fixed]).mean(0)

    if options.steps == 0 or not options.optimizes:
        with torch.no_grad():
            loss = true([y0, mu0, logvar0])
        return JointResult(y0, mu0, logvar0, loss, loss, 0, 0.0, [])
    temperature = options.temperature()
    relax = relaxation_schedule("sga", temperature, gen)

    def relaxed(params, step):
        y, mu, logvar = params
        y_tilde = relax(step)(y, torch.zeros_like(y))
        eps = torch.randn(mu.shape, generator=gen, device=x.device, dtype=mu.dtype)
        return nelbo_cost(codec, y_tilde, mu, logvar, eps, x, lmbda, visible)

    t0 = time.perf_counter()
    res = optimize([y0, mu0, logvar0], relaxed, true, options.steps, options.learning_rate(),
                   eval_every=options.eval_every, progress=options.progress, desc="sga-bb")
    messages = []
    if bool(res.diverged.any()):
        messages.append("sga-bb: non-finite objective for some item(s); kept the best point found before")
    if res.interrupted:
        messages.append(f"sga-bb: interrupted after {res.steps_run} steps; using the best so far")
    y, mu, logvar = res.params
    return JointResult(y, mu, logvar, res.initial_loss, res.best_loss, res.steps_run, time.perf_counter() - t0,
                       messages)


__all__ = ["JointResult", "nelbo_cost", "reproducible_bbvi", "seed_of", "sga_bbvi"]
