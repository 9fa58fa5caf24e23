"""The ``rdopt`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Errors the user can cause (bad input, bad arguments, unavailable model, corrupt bitstream) end with
one line ``rdopt: error: …`` on stderr and exit status 2 (1 for an interrupted run); tracebacks are
kept for bugs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

SUBCOMMANDS = ("encode", "decode", "info", "train", "eval", "report", "demo")


class UserError(Exception):
    """An error caused by the input or the arguments: reported in one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``rdopt: error: …``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"rdopt: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineParser(prog="rdopt", description="Optimization-based encoding for neural image codecs.")
    parser.add_argument("--version", action="version", version=f"rdopt {__version__}")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"rdopt.cli.{name}_cmd")
        except ModuleNotFoundError:
            continue
        mod.add_parser(sub)
    return parser


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else e.__class__.__name__


def main(argv: list[str] | None = None) -> int:
    from ..coding.container import BitstreamError
    from ..data.images import ImageError
    from ..models.registry import ModelUnavailable

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, BitstreamError, ImageError, ModelUnavailable, FileNotFoundError, IsADirectoryError,
            PermissionError) as e:
        print(f"rdopt: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rdopt: interrupted", file=sys.stderr)
        return 1


def device_of(args) -> str:
    import torch

    if args.device:
        try:
            torch.device(args.device)
        except RuntimeError as e:
            raise UserError(f"bad --device {args.device!r}: {_one_line(e)}") from None
        return args.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def _finite_number(text: str, minimum: float, strict: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    ok = (v > minimum if strict else v >= minimum) and v < float("inf")
    if not ok:
        raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {minimum:g}, got {text}")
    return v


def positive_float(text: str) -> float:
    return _finite_number(text, 0.0, strict=True)


def nonneg_float(text: str) -> float:
    return _finite_number(text, 0.0, strict=False)
