"""``rdopt stats IMAGES…``: per-channel variance and coefficient of variation of a model's latents y
and z (continuous and coded) and their bits per pixel over an image set (MS-NIC Tables 6 and 10)."""

from __future__ import annotations

import json

from .common import add_model_args, add_threads_arg, load_model_from_args
from .main import UserError, device_of


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="latent statistics of a model over images (variance, CoV, bpp of y and z)")
    p.add_argument("inputs", nargs="+", help="image files, folders, or 'eval-set' (the scikit-image evaluation photos)")
    add_model_args(p)
    add_threads_arg(p)
    p.add_argument("--json", action="store_true", help="print the full report (with per-channel values) as JSON")
    p.add_argument("--out", help="also write the full report as JSON to this file")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..data.safeio import check_output
    from ..eval.images import collect_images
    from ..eval.latent_stats import format_table, latent_statistics

    if args.out:
        check_output(args.out, args.inputs)
    try:
        images = collect_images(args.inputs, None)
    except ValueError as e:
        raise UserError(str(e)) from None
    model = load_model_from_args(args, device_of(args))
    report = latent_statistics(model, [im.image.rgb for im in images], device=model.device)
    report["model"] = model.model_id
    report["names"] = [im.name for im in images]
    if args.out:
        from ..data.images import atomic_write_bytes

        atomic_write_bytes(args.out, json.dumps(report, indent=1).encode())
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{model.model_id} over {len(images)} images")
        print(format_table(report))
    return 0
