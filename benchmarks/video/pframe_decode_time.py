"""Decode time of one 256×256 P-frame (rANS decoding of the four latents + decoder-side evaluation) next to
the embedded I-frame model rdopt-msh-q4, one thread, random P-frame weights (time does not depend on them
except through the number of coded symbols).

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video/pframe_decode_time.py
"""
import time, torch
torch.set_num_threads(1)
from rdopt.codecs.image.loading import load_model
from rdopt.codecs.video.dvc import PFrameCodec
torch.manual_seed(0)
m = PFrameCodec().eval(); m.update()
print("P-frame params", sum(p.numel() for p in m.parameters()))
x = torch.rand(1,3,256,256); ref = torch.rand(1,3,256,256)
x = (0.7*ref + 0.3*x)
im = load_model("rdopt-msh", 4)
with torch.no_grad():
    lat = m.quantize(m.amortize(x, ref)); coded = m.compress(lat)
    il = im.quantize(im.amortize(x)); ic = im.compress(il)
    pt, it, st = [], [], []
    for i in range(5):
        t=time.perf_counter(); ev = m.hard_evaluate(m.decompress(coded), ref); pt.append(time.perf_counter()-t)
        t=time.perf_counter(); ev = m.hard_evaluate(lat, ref); st.append(time.perf_counter()-t)
        t=time.perf_counter(); ie = im.hard_evaluate(im.decompress(ic)); it.append(time.perf_counter()-t)
print(f"P-frame decode 256x256 (rANS + synthesis): min {min(pt):.3f}s median {sorted(pt)[2]:.3f}s; synthesis only min {min(st):.3f}s; "
      f"I-frame rdopt-msh-q4 decode: min {min(it):.3f}s median {sorted(it)[2]:.3f}s (random P weights: {coded.num_bytes()} bytes)")
