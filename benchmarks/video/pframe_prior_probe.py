"""Probe: how much would rdopt-video2's P-frames gain from a better residual entropy model?

rdopt-video2's residual coder sees the motion-compensated prediction in its analysis and synthesis transforms, but
its entropy model is the image model's hyperprior: ``p(ŷ_t | ẑ_t)``. Two richer models, each born at zero so that
training starts exactly at the shipped codec:

* ``temporal`` — a *temporal prior* (DCVC's, Li et al. 2021): ``(σ, μ) = h_s(ẑ_t) + c(x̄_t)``, ``c`` a small network
  of the prediction at 1/4 resolution (pixel-unshuffled) down to the latent grid;
* ``context`` — rdopt-scc's space-channel context model (channel groups × checkerboard, He et al. 2021/2022) over the
  same hyperprior, evaluated pass after pass in the decoder's order.

This fine-tunes the shipped weights of one quality from the same start, with the same clips: ``control`` (the codec
as it is) or a variant, by the GoP-unrolled objective of the joint stage (training clips only: bigbuckbunny and
synthetic camera motion over the training photos), then evaluates — amortized latents, hard rounding, the entropy
model's bits (estimated, labelled so) — on held-out batches of the same training sources (another seed, 256² crops,
4 frames). ``--state`` checkpoints every 100 steps and resumes (a run longer than a session); ``--export`` writes the
result as an rdopt-video2 weights file (``control``: the shipped architecture; ``context``: its residual latent coded
with the context model, one rANS string per frame — ``benchmarks/train/video2_context.sh``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/pframe_prior_probe.py --variant control --out runs/tp/control.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/pframe_prior_probe.py --variant temporal --out runs/tp/temporal.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/pframe_prior_probe.py --variant context --y-relax mixed \
        --steps 2000 --state runs/tp/context.state.pt --out runs/tp/context.json
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from compressai.layers import conv3x3
from compressai.models.utils import conv
from torch import nn
from tqdm import tqdm

from rdopt.codecs.video.pframe import ResidualEvaluation
from rdopt.codecs.video.video2 import VIDEO2_LAMBDAS, load_video2
from rdopt.losses.video import GopObjective
from rdopt.relax.rounding import mixed, uniform_noise
from rdopt.training.config import TrainConfig
from rdopt.training.video import clip_sampler


class TemporalPrior(nn.Module):
    """``(Δσ, Δμ)`` of the residual latent from the prediction: unshuffle ×4 → two stride-2 convolutions → 3×3
    convolution to 2·M channels, the last at zero."""

    def __init__(self, latent: int, channels: int = 64):
        super().__init__()
        self.net = nn.Sequential(conv(48, channels, 5, 2), nn.LeakyReLU(inplace=True), conv(channels, channels, 5, 2),
                                 nn.LeakyReLU(inplace=True), conv3x3(channels, 2 * latent))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(F.pixel_unshuffle(prediction, 4)).chunk(2, 1)


def with_temporal_prior(pframe, prior: TemporalPrior) -> None:
    """Replace the P-frame codec's residual evaluation by one whose entropy parameters add ``prior(prediction)``
    (the same steps as :meth:`rdopt.codecs.video.parts.MeanScaleLatent.evaluate` otherwise)."""
    lat, names = pframe.residual.latent, pframe.names

    def evaluate_residual(v, h, relax, motion):
        z_t = relax[names[3]](h, lat.z_offset(h))
        scales, means = lat.prior(z_t)
        ds, dm = prior(motion.prediction)
        scales, means = scales + ds, means + dm
        v_t = relax[names[2]](v, means)
        pred = motion.prediction
        return ResidualEvaluation(v_t, z_t, lat.v_bits(v_t, scales, means), lat.z_bits(z_t),
                                  pred + pframe.residual.synthesize(v_t, pred))

    pframe.evaluate_residual = evaluate_residual
    pframe.temporal_prior = prior


@torch.no_grad()
def evaluate(codec, batches: list[torch.Tensor], lmbda: float) -> dict:
    """Mean over held-out clips of the P-frames' estimated bpp, PSNR and cost (amortized, hard rounding)."""
    bpp, mse = [], []
    for x in batches:
        gop = codec.gop(x.shape[1])
        ev = gop.hard_evaluate(gop.amortize(x))
        pix = x.shape[-2] * x.shape[-1]
        p_bits = sum(r for n, r in ev.rates.items() if not n.endswith("_0"))
        bpp.append(p_bits / pix / (x.shape[1] - 1))
        mse.append((ev.x_hat[:, 1:].clamp(0, 1) - x[:, 1:]).pow(2).flatten(2).mean(2).mean(1))
    bpp, mse = torch.cat(bpp), torch.cat(mse)
    return {"p_bpp_estimated": float(bpp.mean()), "p_psnr": float((10 * torch.log10(1 / mse)).mean()),
            "p_cost": float((bpp + lmbda * 255.0**2 * mse).mean())}


def with_residual_context(pframe) -> None:
    """Grow the residual latent's entropy model ``p(ŷ | ẑ)`` into rdopt-scc's space-channel context model over the
    same hyperprior (channel groups ``M/12·(1, 1, 2, 4, 4)``, each in two checkerboard passes;
    :class:`rdopt.codecs.video.parts.ContextLatent`, the architecture rdopt-video2 ships with ``context``), evaluated
    pass after pass in the decoder's order. Its context terms start at zero: the codec starts exactly as shipped."""
    pframe.residual = pframe.residual.with_context()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=("control", "temporal", "context"), required=True,
                    help="control: the codec as it is; temporal: + a prior conditioned on the prediction; context: the "
                         "residual's entropy model with rdopt-scc's space-channel context")
    ap.add_argument("--quality", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-5,
                    help="Adam lr of the shipped weights (the joint stage ended at 1e-5; a fresh Adam at 1e-4 moves "
                         "the trained encoder off its optimum at once: −1.4 dB after one step, measured)")
    ap.add_argument("--lr-new", type=float, default=1e-4, help="Adam lr of the new network (temporal prior, context)")
    ap.add_argument("--y-relax", choices=("noise", "mixed"), default="noise",
                    help="training relaxation of the residual latent (the others: uniform noise); mixed = the decoder "
                         "and the contexts see values rounded straight through, the rate is of noisy ones")
    ap.add_argument("--eval-batches", type=int, default=12)
    ap.add_argument("--photos", default="runs/photos/train", help="training-side photos (fetch_photos.py)")
    ap.add_argument("--state", help="checkpoint every 100 steps here and resume from it (a run longer than a session)")
    ap.add_argument("--export", help="control or context: write the fine-tuned P-frame codec here as a shipped "
                                     "rdopt-video2 file (float16 weights, coder tables, the shipped file's meta)")
    ap.add_argument("--slim", metavar="DST", help="write the carry-over form of --state to DST (the P-frame codec's "
                    "weights in float16, no Adam moments: they underflow in float16) and exit")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.slim:
        if not (a.state and Path(a.state).exists()):
            ap.error("--slim needs an existing --state")
        st = torch.load(a.state, map_location="cpu", weights_only=True)
        st["pframe"] = {k: (v.half() if v.dtype == torch.float32 and v.numel() >= 16 else v)
                        for k, v in st["pframe"].items()}
        st["opt"] = None
        tmp = Path(a.slim + ".tmp")
        torch.save(st, tmp)
        tmp.replace(a.slim)
        print(f"{a.slim}: step {st['step']}")
        return
    if a.export and a.variant == "temporal":
        ap.error("--export writes rdopt-video2's own architecture: --variant control or context")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lmbda = VIDEO2_LAMBDAS[a.quality]
    codec = load_video2(a.quality)
    pframe = codec.pframe
    if a.variant == "temporal":
        with_temporal_prior(pframe, TemporalPrior(pframe.residual.config["latent"]))
    elif a.variant == "context":
        with_residual_context(pframe)
    for p in codec.iframe.parameters():
        p.requires_grad_(False)
    added = {"temporal": lambda: pframe.temporal_prior, "context": lambda: pframe.residual.latent.context}.get(
        a.variant, lambda: None)()
    new = list(added.parameters()) if added is not None else []
    old = [p for p in pframe.parameters() if all(p is not q for q in new)]
    params = old + new
    for p in params:
        p.requires_grad_(True)
    cfg = TrainConfig(out="", lmbda=lmbda, steps=a.steps, video=True, crop=128, frames=4, batch=2,
                      extra_data=a.photos, layer_share=0.3, architecture="rdopt-video2", stage="joint")
    held = clip_sampler(TrainConfig(**{**cfg.__dict__, "crop": 256}), 999, layer_share=0.3, frame_steps=(1, 2, 3))
    batches = [held.batch(1) for _ in range(a.eval_batches)]
    opt = torch.optim.Adam([{"params": old, "lr": a.lr}] + ([{"params": new, "lr": a.lr_new}] if new else []))
    step, log, seconds, before = 0, [], 0.0, None
    if a.state and Path(a.state).exists():
        st = torch.load(a.state, weights_only=True)
        pframe.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in st["pframe"].items()})
        if st["opt"] is not None:  # a slim state (--slim) resumes with fresh Adam moments
            opt.load_state_dict(st["opt"])
        step, log, seconds, before = st["step"], json.loads(st["log"]), st["seconds"], json.loads(st["before"])
        print(f"resumed at step {step}")
    if before is None:
        pframe.eval()
        before = evaluate(codec, batches, lmbda)
    pframe.train()
    sampler = clip_sampler(cfg, 7 + step, layer_share=0.3, frame_steps=(1, 2, 3))  # a resume draws other clips
    generator = torch.Generator().manual_seed(11 + step)
    noise = uniform_noise(generator)
    y_relax = mixed(generator) if a.y_relax == "mixed" else noise
    names = pframe.names
    objective = GopObjective(codec, relaxation={names[0]: noise, names[1]: noise, names[2]: y_relax, names[3]: noise})

    def save() -> None:
        if a.state:
            tmp = Path(a.state + ".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"pframe": pframe.state_dict(), "opt": opt.state_dict(), "step": step, "log": json.dumps(log),
                        "seconds": seconds + time.time() - t0, "before": json.dumps(before)}, tmp)
            tmp.replace(a.state)

    def stop(signum, frame):  # SIGTERM: checkpoint like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    t0 = time.time()
    try:
        for step in tqdm(range(step + 1, a.steps + 1), desc=f"P-frame probe ({a.variant})", initial=step, total=a.steps):
            rd = objective(sampler.batch(cfg.batch), lmbda)
            opt.zero_grad(set_to_none=True)
            rd.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step % 25 == 0:
                log.append({"step": step, "loss": float(rd.loss), "bpp": float(rd.bpp[:, 1:].mean()),
                            "mse": float(rd.mse[:, 1:].mean()), "mse_pred": float(rd.prediction_mse.mean())})
            if step % 100 == 0:
                save()
    except KeyboardInterrupt:
        save()
        raise
    save()
    pframe.eval()
    after = evaluate(codec, batches, lmbda)
    if a.export:
        from rdopt.codecs.video.video2 import weights_path

        meta = torch.load(weights_path(a.quality), map_location="cpu", weights_only=True).get("meta")
        pframe.save_shipped(a.export, meta=meta)
    doc = {"variant": a.variant, "quality": a.quality, "lmbda": lmbda, "steps": a.steps, "lr": a.lr, "lr_new": a.lr_new,
           "y_relax": a.y_relax, "seconds": seconds + time.time() - t0, "held_out_before": before,
           "held_out_after": after, "log": log,
           "note": "P-frame bits are the entropy model's estimates (hard rounding), not coded bytes"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("variant", "held_out_before", "held_out_after")}, indent=1))


if __name__ == "__main__":
    main()
