"""Regenerate the golden files (only when the format version changes on purpose; ``tiny.rdo`` is the
format-v1 file of the same payload as ``tiny_v2.rdo`` and must stay readable):

    .venv/bin/python tests/data/golden/make_golden.py
"""

import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parents[1]))

from conftest import make_tiny_net, pattern_image  # noqa: E402
from PIL import Image  # noqa: E402

from rdopt.api.image import encode_image  # noqa: E402
from rdopt.codecs.image.loading import load_model, save_embedded  # noqa: E402
from rdopt.coding.container import pack_v1, unpack  # noqa: E402
from rdopt.data.images import load_image  # noqa: E402

import torch  # noqa: E402

from rdopt.codecs.image.hyperprior import HyperpriorAdapter  # noqa: E402
from rdopt.losses.elbo import elbo_loss  # noqa: E402

# A few hundred steps on crops of synthetic pattern images: enough for a non-degenerate code.
net = make_tiny_net(0)
net.train()
adapter = HyperpriorAdapter(net, "tiny", 0.0067)
opt = torch.optim.Adam([p for n, p in net.named_parameters() if not n.endswith("quantiles")], lr=2e-3)
aux = torch.optim.Adam([p for n, p in net.named_parameters() if n.endswith("quantiles")], lr=1e-2)
gen = torch.Generator().manual_seed(0)
train = torch.stack([torch.from_numpy(pattern_image(64, 64, s)).permute(2, 0, 1).float() / 255 for s in range(8)])
for step in range(400):
    loss = elbo_loss(adapter, train[torch.randint(0, 8, (4,), generator=gen)], 0.0067, gen).loss.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    a = net.aux_loss()
    aux.zero_grad()
    a.backward()
    aux.step()
net.eval()
save_embedded(net, here / "tiny.pt", levels=16)
Image.fromarray(pattern_image(40, 48, seed=11)).save(here / "input.png")
model = load_model("rdopt-msh", 3, checkpoint=here / "tiny.pt")
data, stats, pixels, _ = encode_image(model, load_image(here / "input.png"))
(here / "tiny_v2.rdo").write_bytes(data)
# the v1 golden file: the same payload in the format rdopt wrote before v2 (decoding it must keep working)
f = unpack(data)
(here / "tiny.rdo").write_bytes(pack_v1(f.header, f.strings))
Image.fromarray(pixels).save(here / "decoded.png")
print(len(data), stats.psnr)
