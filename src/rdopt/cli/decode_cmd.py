"""``rdopt decode IN.rdo -o OUT.png``."""

from __future__ import annotations

from pathlib import Path

from .main import UserError, device_of


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help="decode a .rdo bitstream to an image")
    p.add_argument("input", help=".rdo file")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .bmp, .tif, .ppm, lossless .webp)")
    p.add_argument("--checkpoint", help="weights file, for bitstreams written with a custom checkpoint")
    p.set_defaults(run=run)


def read_bitstream(path: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such file: {p}")
    if p.is_dir():
        raise UserError(f"is a directory, not a bitstream: {p}")
    return p.read_bytes()


def run(args) -> int:
    from ..api import decode_bytes
    from ..data.images import check_output_path, save_image

    check_output_path(args.output)
    data = read_bitstream(args.input)
    _, pixels, header = decode_bytes(data, checkpoint=args.checkpoint, device=device_of(args))
    save_image(args.output, pixels)
    print(f"decoded {header.width}×{header.height} ({'grayscale' if header.grayscale else 'RGB'}) with {header.model_id} -> {args.output}")
    return 0
