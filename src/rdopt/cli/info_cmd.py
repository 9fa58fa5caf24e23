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
    from ..coding.container import unpack

    data = read_bitstream(args.input)
    f = unpack(data)
    h = f.header
    info = {
        "format_version": f.version, "model": h.model_id, "weight_hash": h.weight_hash.hex(),
        "width": h.width, "height": h.height, "grayscale": h.grayscale, "alpha_dropped": h.alpha_dropped,
        "method": h.method, "solver": h.solver, "steps": h.steps, "file_bytes": len(data),
        "string_bytes": [len(s) for s in f.strings],
        # bits per pixel of all the coded pixels: a multi-frame container (a GoP) codes width×height per frame
        "bpp": 8.0 * len(data) / (h.width * h.height * max(len(f.frames), 1)),
        "frames": [{"type": fr.type, "side_info_bits": fr.side_info_bits,
                    "streams": {s.name: {"kind": s.kind, "bytes": len(s.data)} for s in fr.streams}}
                   for fr in f.frames],
    }
    from ..coding.bbrecord import bits_back_accounting

    bb = bits_back_accounting(f, len(data))
    if bb is not None:
        info["bits_back"] = bb
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:15s} {v}")
    return 0
