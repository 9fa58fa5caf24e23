"""rdopt.codecs imports CompressAI without its package __init__ (rdopt.codecs._compressai): the entropy models,
the rANS coder and the networks rdopt uses work as with the stock import, without torch_geometric, torchvision
or scipy.stats — each check in a fresh interpreter (which imports rdopt.codecs before CompressAI: the first
import, of rdopt.codecs.image.loading, runs rdopt/codecs/__init__.py)."""

import os
import subprocess
import sys
from pathlib import Path

import rdopt

SRC = str(Path(rdopt.__file__).resolve().parents[1])

ROUND_TRIP = """
import sys
import torch
from rdopt.codecs.image.loading import load_model, build_network
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN, ResidualBlock, conv3x3, subpel_conv3x3
from compressai.models.utils import conv, deconv
from compressai.models.video import ScaleSpaceFlow
from compressai.zoo.pretrained import load_pretrained
from compressai.zoo.video import model_urls
from compressai.ans import BufferedRansEncoder, RansDecoder

m = load_model(quality=3)
x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    out = m.net.compress(x)
    back = m.net.decompress(out["strings"], out["shape"])["x_hat"]
heavy = sorted(n for n in ("torch_geometric", "torchvision", "pandas", "sympy", "torch._dynamo") if n in sys.modules)
stats_loaded = "norm" in getattr(sys.modules.get("scipy.stats"), "__dict__", {})
torch.manual_seed(0)
net = build_network("mbt2018-mean", 16, 24)
net.update(force=True)  # the Gaussian scale tables use scipy.stats.norm.ppf
import compressai
print(repr((out["strings"], round(float(back.sum()), 3), net.gaussian_conditional._quantized_cdf.sum().item(),
           compressai.available_entropy_coders(), compressai.get_entropy_coder())))
print(heavy, stats_loaded, file=sys.stderr)
"""


def _run(code, **env):
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=SRC, **env))
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr.strip()


def test_compressai_without_its_init_codes_as_the_stock_import():
    fast, fast_mods = _run(ROUND_TRIP)
    stock, stock_mods = _run(ROUND_TRIP, RDOPT_FULL_COMPRESSAI="1")
    assert fast == stock  # same rANS strings, reconstruction and scale tables
    assert fast_mods.splitlines()[-1] == "[] False"  # nothing heavy imported until the tables were computed…
    assert "torch_geometric" in stock_mods.splitlines()[-1]


def test_compressai_package_still_offers_its_subpackages_and_functions():
    code = ("import rdopt.codecs, compressai, sys\n"
            "assert compressai.__version__ and compressai.zoo.image.bmshj2018_hyperprior\n"
            "compressai.set_entropy_coder('ans')\n"
            "import scipy.stats\n"
            "assert scipy.stats.norm.ppf(0.5) == 0.0 and sys.modules['scipy.stats'] is scipy.stats\n"
            "print('ok')\n")
    assert _run(code)[0].strip() == "ok"
