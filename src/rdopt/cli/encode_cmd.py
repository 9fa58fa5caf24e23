"""``rdopt encode IN -o OUT.rdo``: write a real bitstream and report what decoding it gives."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import add_model_args, add_optimization_args, load_model_from_args, optimization_options
from .main import UserError, device_of


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode an image to a .rdo bitstream")
    p.add_argument("input", help="image file (PNG, JPEG, … anything Pillow reads)")
    p.add_argument("-o", "--output", required=True, help="output .rdo file (written atomically)")
    add_model_args(p)
    add_optimization_args(p)
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def format_stats(s) -> str:
    ms = f"{s.ms_ssim:.4f}" if s.ms_ssim is not None else "n/a (image < 161 px)"
    lines = [
        f"model       {s.model} (λ={s.lmbda}), method {s.method}" + (f", {s.steps} steps" if s.steps else ""),
        f"image       {s.width}×{s.height}",
        f"file        {s.file_bytes} bytes = {s.bpp:.4f} bpp (real; payload {s.bpp_payload:.4f} bpp)",
        f"estimated   {s.bpp_estimated:.4f} bpp (from the entropy model's likelihoods)",
        f"PSNR        {s.psnr:.3f} dB   MS-SSIM {ms}",
        f"R-D cost    {s.rd_cost:.4f} (real)   {s.rd_cost_estimated:.4f} estimated, amortized start "
        f"{s.rd_cost_amortized_estimated:.4f}",
        f"time        encode {s.encode_seconds:.2f} s (optimize {s.optimize_seconds:.2f} s), decode {s.decode_seconds:.2f} s",
    ]
    lines += [f"note        {m}" for m in s.messages]
    lines += [f"WARNING     {m}" for m in s.warnings]
    return "\n".join(lines)


def run(args) -> int:
    from ..api import encode_image
    from ..data.images import atomic_write_bytes, load_image

    out = Path(args.output)
    if out.is_dir():
        raise UserError(f"output is a directory: {out}")
    if not out.resolve().parent.is_dir():
        raise UserError(f"output directory does not exist: {out.resolve().parent}")
    options = optimization_options(args, progress=not (args.quiet or args.json))
    image = load_image(args.input)
    model = load_model_from_args(args, device_of(args))
    data, stats, *_ = encode_image(model, image, options)
    atomic_write_bytes(out, data)
    if image.alpha_dropped:
        print("rdopt: note: the alpha channel was dropped (rdopt codes colour only)", file=sys.stderr)
    print(json.dumps(stats.to_dict(), indent=2) if args.json else format_stats(stats))
    return 0
