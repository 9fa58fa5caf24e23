"""Per model (quality): real file and payload size over the estimated rate, and encode/decode times,
from an `rdopt eval images` results file."""

import json
import sys

doc = json.load(open(sys.argv[1]))
rows = {}
for e in doc["entries"]:
    rows.setdefault(e["quality"], []).append(e)
print("q  images  bpp(file)  bpp(payload)  bpp(est.)  file/est-1  payload/est-1  enc[s]  dec[s]")
for q, es in sorted(rows.items()):
    n = len(es)
    f = sum(e["bpp"] for e in es) / n
    p = sum(e["bpp_payload"] for e in es) / n
    est = sum(e["bpp_estimated"] for e in es) / n
    enc = sum(e["encode_seconds"] for e in es) / n
    dec = sum(e["decode_seconds"] for e in es) / n
    print(f"{q}  {n:6d}  {f:9.4f}  {p:12.4f}  {est:9.4f}  {100 * (f / est - 1):+9.2f}%  {100 * (p / est - 1):+12.2f}%  {enc:6.2f}  {dec:6.2f}")
