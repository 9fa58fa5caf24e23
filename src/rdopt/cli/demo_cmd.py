"""``rdopt demo``: parses its options; the demo itself is :mod:`rdopt.eval.demo`."""

from __future__ import annotations

from .main import device_of, positive_int


def add_parser(sub) -> None:
    from ..eval.demo import DemoSettings as D

    p = sub.add_parser("demo", help="images: embedded codec vs JPEG/WebP/AVIF, amortized vs SGA; video: rdopt-video2 vs "
                                    "x264, GoP bit allocation; tables and plots")
    p.add_argument("--out", default=D.out, help=f"folder for results and plots (default {D.out})")
    p.add_argument("--qualities", default="2,3,4,5,6", help="embedded-model qualities of part 1, comma-separated")
    p.add_argument("--sga-steps", type=positive_int, default=D.sga_steps, help=f"SGA steps in part 2 (default {D.sga_steps})")
    p.add_argument("--sga-crop", default=D.sga_crop, help=f"crop for part 2 (default {D.sga_crop})")
    p.add_argument("--sga-qualities", default="3,5", help="qualities of part 2, comma-separated")
    p.add_argument("--video-frames", type=positive_int, default=D.video_frames,
                   help=f"carphone frames of part 3 (default {D.video_frames})")
    p.add_argument("--alloc-steps", type=positive_int, nargs=2, default=(D.alloc_steps_i, D.alloc_steps_p),
                   metavar=("K_I", "K_P"), help=f"part 4 SAVI steps (default {D.alloc_steps_i} {D.alloc_steps_p})")
    p.add_argument("--parts", default="1,2,3,4", help="which parts to run (default 1,2,3,4)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..eval.demo import DemoSettings, run_demo
    from .common import int_list
    from .main import UserError

    parts = tuple(int_list(args.parts))
    if not parts or any(p not in (1, 2, 3, 4) for p in parts):
        raise UserError(f"--parts is a comma-separated subset of 1,2,3,4, got {args.parts!r}")
    s = DemoSettings(out=args.out, qualities=tuple(int_list(args.qualities)), sga_steps=args.sga_steps,
                     sga_crop=args.sga_crop, sga_qualities=tuple(int_list(args.sga_qualities)),
                     video_frames=args.video_frames, alloc_steps_i=args.alloc_steps[0], alloc_steps_p=args.alloc_steps[1],
                     parts=parts)
    run_demo(s, device_of(args))
    return 0
