"""Probe: can the embedded P-frame codec learn motion at all in a short run?

Trains only the P-frame part (I-frame = the frozen embedded image model at the quality matching λ) on
pairs (T = 2) of 128×128 crops from :class:`ClipSampler` (bigbuckbunny + synthetic camera motion
over the training photos), with the GoP objective ``bpp + λ·MSE`` summed over the pair plus a warm-up
term β·λ·MSE(prediction) (DVC trains its motion part on the warp loss first; β decays to 0.1 halfway).
Before and after, on a fixed batch of other clips (another seed), it prints the PSNR of the
motion-compensated prediction against copying the decoded previous frame, and the hard P-frame R-D.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/video/probe_pframe.py --steps 300 --seconds 270 | tee benchmarks/video/probe_pframe.txt
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from rdopt.codecs.image.loading import load_model
from rdopt.codecs.video.dvc import DVCPFrameCodec
from rdopt.codecs.video.gop import VideoCodec, iframe_quality_for
from rdopt.data.clips import ClipSampler, bigbuckbunny_sequence
from rdopt.data.sources import training_photos
from rdopt.losses.video import GopObjective


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b).pow(2).mean().item()
    return -10.0 * math.log10(max(mse, 1e-12))


@torch.no_grad()
def probe(codec: VideoCodec, clips: torch.Tensor) -> dict[str, float]:
    x0, x1 = clips[:, 0], clips[:, 1]
    ref = codec.iframe.hard_evaluate(codec.iframe.quantize(codec.iframe.amortize(x0))).x_hat
    lat = codec.pframe.quantize(codec.pframe.amortize(x1, ref))
    ev = codec.pframe.hard_evaluate(lat, ref)
    npix = x1.shape[-2] * x1.shape[-1]
    return {
        "psnr_prediction": psnr(ev.prediction, x1),
        "psnr_warp_only": psnr(ev.motion.warped, x1),
        "psnr_copy_decoded_prev": psnr(ref, x1),
        "psnr_copy_original_prev": psnr(x0, x1),
        "pframe_bpp": (ev.bits.mean() / npix).item(),
        "pframe_motion_bpp": ((ev.motion.bits_w + ev.motion.bits_z_w).mean() / npix).item(),
        "pframe_psnr": psnr(ev.x_hat, x1),
        "mean_abs_flow_px": ev.motion.flow.abs().mean().item(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lmbda", type=float, default=1024.0, help="λ on MSE of [0,1] RGB (DVC units)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=270.0, help="stop training after this wall time")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bbb-frames", type=int, default=48, help="decode only the first N bigbuckbunny frames (setup time)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    q = iframe_quality_for(args.lmbda)
    iframe = load_model("rdopt-msh", quality=q)
    pframe = PFrameCodec()
    codec = VideoCodec(iframe, pframe)
    n_params = sum(p.numel() for p in pframe.parameters())
    videos, photos = [bigbuckbunny_sequence(2, max_frames=args.bbb_frames)], training_photos()
    train = ClipSampler(videos, photos, size=args.size, frames=2, seed=args.seed)
    held = torch.cat([ClipSampler(videos, (), size=args.size, frames=2, seed=args.seed + 1000).batch(4),
                      ClipSampler((), photos, size=args.size, frames=2, seed=args.seed + 1001).batch(4)])
    print(f"λ={args.lmbda:g}  I-frame rdopt-msh-q{q} (frozen)  P-frame params={n_params}  "
          f"batch={args.batch}×2×{args.size}²  threads={torch.get_num_threads()}  setup {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"held-out probe: 4 bigbuckbunny pairs + 4 synthetic-motion pairs (seeds {args.seed + 1000}/{args.seed + 1001})")

    pframe.update()
    before = probe(codec, held)
    print("before: " + "  ".join(f"{k}={v:.3f}" for k, v in before.items()))

    params = [p for n, p in pframe.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in pframe.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux, lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed)
    objective = GopObjective(codec, generator=gen, prediction_weight=1.0)
    pframe.train()
    t_train = time.perf_counter()
    step = 0
    while step < args.steps and time.perf_counter() - t_train < args.seconds:
        objective.prediction_weight = 1.0 if step < args.steps // 2 else 0.1
        clips = train.batch(args.batch)
        rd = objective(clips, args.lmbda)
        opt.zero_grad(set_to_none=True)
        rd.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        aux_opt.zero_grad(set_to_none=True)
        pframe.aux_loss().backward()
        aux_opt.step()
        step += 1
        if step % 25 == 0:
            print(f"step {step:4d}  loss {rd.loss.item():.4f}  P bpp {rd.bpp[:, 1].mean().item():.4f}  "
                  f"P psnr {-10 * math.log10(rd.mse[:, 1].mean().item()):.2f}  "
                  f"pred psnr {-10 * math.log10(rd.prediction_mse.mean().item()):.2f}  "
                  f"{(time.perf_counter() - t_train) / step:.2f} s/step", flush=True)
    pframe.eval()
    pframe.update()
    after = probe(codec, held)
    print(f"trained {step} steps in {time.perf_counter() - t_train:.0f}s")
    print("after:  " + "  ".join(f"{k}={v:.3f}" for k, v in after.items()))
    gain = after["psnr_prediction"] - after["psnr_copy_decoded_prev"]
    verdict = "BEATS" if gain > 0 else "does NOT beat"
    print(f"prediction {verdict} copying the decoded previous frame: {after['psnr_prediction']:.2f} dB vs "
          f"{after['psnr_copy_decoded_prev']:.2f} dB ({gain:+.2f} dB)")


if __name__ == "__main__":
    main()
