"""``rdopt decode IN.rdo -o OUT.png``."""

from __future__ import annotations

import sys

from .common import add_threads_arg, pixel_limit
from .main import UserError, device_of, positive_int

# The outputs rdopt.data.video.output_kind accepts for a video, as its error names them
VIDEO_OUTPUTS = "a folder (PNG frames), .y4m, .yuv, .mp4 or .mkv"


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help="decode a .rdo bitstream to an image, or a .rdov bitstream to a video")
    p.add_argument("input", help=".rdo or .rdov file, or - for standard input")
    p.add_argument("-o", "--output", required=True,
                   help="output image; the extension picks the (lossless) format: .png, .bmp, .tif, .ppm, .webp; "
                        "- writes PNG to standard output (the report then goes to standard error). For a video "
                        "(.rdov): a folder of PNG frames (no suffix), .y4m, .yuv, .mp4 (lossless) or .mkv (lossless)")
    p.add_argument("--checkpoint", help="weights file, for bitstreams written with a custom checkpoint (a video: "
                                        "the codec's checkpoint)")
    p.add_argument("--codec", metavar="FILE.py:FACTORY",
                   help="a video bitstream of a codec that is not registered: the local file's factory that builds it")
    p.add_argument("--side-info-out", metavar="FILE",
                   help="bits-back files (--method sga-bb): write the recovered side information here")
    p.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                   help="largest image (of a video: frame) decoded, in pixels; a header claiming more is refused "
                        "before anything is allocated (default 67108864 = 8192×8192)")
    add_threads_arg(p)
    p.set_defaults(run=run)


def read_bitstream(path: str) -> bytes:
    """The bytes of a ``.rdo`` file (``-``: standard input), with one-line errors."""
    from ..data.safeio import read_input_bytes

    return read_input_bytes(path, what="bitstream")


def read_checked(path: str, max_pixels: int | None):
    """Read and parse a bitstream, refusing (before any model is loaded) one whose claimed image could
    not be decoded within the memory budget, or has more than ``max_pixels`` pixels (``None``: no limit)."""
    from ..coding.container import check_pixels, min_decode_bytes, unpack
    from ..data.safeio import check_memory

    data = read_bitstream(path)
    f = unpack(data)
    h = f.header
    check_memory(min_decode_bytes(h), f"decoding a {h.width}×{h.height} image")
    check_pixels(h.width, h.height, max_pixels)
    return data, f


def check_video_decode(args) -> None:
    """Before :func:`rdopt.cli.video_cmd.decode`: the output names a video form, and the header's frame size
    fits the memory budget (as ``video_cmd.decode`` checks again) and ``--max-pixels``."""
    import io

    from ..api.video import min_decode_bytes
    from ..coding.container import BitstreamError, check_pixels
    from ..coding.rdov import read_header
    from ..data.safeio import check_memory
    from ..data.video import output_kind

    if str(args.output) == "-":
        raise UserError(f"a video cannot be written to standard output: give {VIDEO_OUTPUTS}")
    output_kind(args.output)
    if str(args.input) == "-":
        # standard input cannot be read twice: the header from what is buffered (the first read of a pipe
        # holds it in practice); if it is not all there, video_cmd.decode reads it with its memory check only
        try:
            h = read_header(io.BytesIO(sys.stdin.buffer.peek(1 << 16)))
        except BitstreamError:
            return
    else:
        with open(args.input, "rb") as f:
            h = read_header(f)
    check_memory(min_decode_bytes(h), f"decoding a GoP of {min(h.gop, h.frames)} frames of {h.width}×{h.height}")
    check_pixels(h.width, h.height, pixel_limit(args), "frame")


def run(args) -> int:
    from . import video_cmd

    if video_cmd.is_video_bitstream(str(args.input)):
        check_video_decode(args)
        return video_cmd.decode(args)
    from ..data.images import check_output_path
    from ..data.safeio import is_stdio

    check_output_path(args.output, [args.input])  # before any work: format, never the input, writable
    data, f = read_checked(args.input, pixel_limit(args))
    if f.header.method == "sga-bb":
        return decode_bits_back(args, data)
    if args.side_info_out:
        raise UserError("--side-info-out: this bitstream holds no side information (not --method sga-bb)")
    from ..api.image import decode_bytes
    from ..data.images import save_image

    _, pixels, header = decode_bytes(data, checkpoint=args.checkpoint, device=device_of(args),
                                     max_pixels=pixel_limit(args))
    save_image(args.output, pixels)
    report = sys.stderr if is_stdio(args.output) else sys.stdout
    print(f"decoded {header.width}×{header.height} ({'grayscale' if header.grayscale else 'RGB'}) with "
          f"{header.model_id} -> {args.output}", file=report)
    return 0


def decode_bits_back(args, data: bytes) -> int:
    """Algorithm 1 ``decode``: the image, and the side information taken back from the bitstream."""
    from ..api.bitsback import decode_bytes_bb
    from ..data.images import save_image
    from ..data.safeio import atomic_write, check_output, is_stdio

    if args.side_info_out:
        check_output(args.side_info_out, [args.input, args.output], what="--side-info-out")
    dec = decode_bytes_bb(data, checkpoint=args.checkpoint, device=device_of(args))
    save_image(args.output, dec.pixels)
    if args.side_info_out:
        atomic_write(args.side_info_out, dec.side_info)
    h = dec.header
    report = sys.stderr if is_stdio(args.output) else sys.stdout
    print(f"decoded {h.width}×{h.height} ({'grayscale' if h.grayscale else 'RGB'}) with {h.model_id} -> {args.output}",
          file=report)
    print(f"bits-back: file {dec.file_bits} bits, recovered {dec.side_info_bits} bits of side information "
          f"(checksum ok{', -> ' + str(args.side_info_out) if args.side_info_out else ''}), net {dec.net_bits} bits = "
          f"{dec.net_bits / (h.width * h.height):.4f} bpp; reproducible_bbvi {dec.bbvi_seconds:.2f} s", file=report)
    return 0
