"""``rdopt info IN.rdo``: what a bitstream holds (no decoding, no model needed)."""

from __future__ import annotations

import json

from .decode_cmd import read_bitstream


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show the header of a .rdo bitstream (.rdov: and a per-frame table)")
    p.add_argument("input", help=".rdo or .rdov file, or - for standard input")
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from . import video_cmd

    if video_cmd.is_video_bitstream(str(args.input)):
        return video_cmd.info(args)
    from ..coding.describe import describe_rdo

    info = describe_rdo(read_bitstream(args.input))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:15s} {v}")
    return 0
