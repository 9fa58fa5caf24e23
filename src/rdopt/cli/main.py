"""The ``rdopt`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Errors the user can cause (bad input, bad arguments, unavailable model, corrupt bitstream, unusable
output path, not enough memory) end with one line ``rdopt: error: …`` on stderr and exit status 2; an
interrupted run (Ctrl-C, or SIGTERM, handled alike) prints ``rdopt: interrupted`` and exits with 130 like
any shell command killed by SIGINT, at any moment from start-up on; tracebacks are kept for bugs.

Start-up: only the chosen subcommand's module is imported (``rdopt info`` never imports torch), building
the parser imports no torch (``--help`` and usage errors: tests/unit/test_cli_defaults.py), and ``main``
recognises rdopt's own error types without importing the modules that define them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
import warnings

SUBCOMMANDS = ("encode", "decode", "info", "train", "stats", "eval", "report", "demo")
SUBCOMMAND_HELP = {
    "encode": "encode an image to a .rdo bitstream, or a video to a .rdov bitstream",
    "decode": "decode a .rdo bitstream to an image, or a .rdov bitstream to a video",
    "info": "show the header of a .rdo bitstream (.rdov: and a per-frame table)",
    "train": "train or fine-tune a hyperprior model (ELBO or a multi-sample bound)",
    "stats": "latent statistics of a model over images (variance, CoV, bpp of y and z)",
    "eval": "evaluate methods × qualities on images (real bitstreams)",
    "report": "BD-rate table and R-D / learning-curve plots from eval results",
    "demo": "encode/decode the evaluation photos; amortized vs SGA; plots",
}
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C

# Exceptions reported as one line: (module, class name). Matched by name so that ``main`` does not
# import torch-heavy modules just to name their exception classes.
USER_ERRORS = (
    ("rdopt.cli.main", "UserError"),
    ("rdopt.coding.container", "BitstreamError"),
    ("rdopt.data.images", "ImageError"),
    ("rdopt.data.video", "VideoError"),
    ("rdopt.data.safeio", "OutputError"),
    ("rdopt.data.safeio", "MemoryBudgetError"),
    ("rdopt.codecs.registry", "ModelUnavailable"),  # the class rdopt.codecs.image.loading re-exports
)


class UserError(Exception):
    """An error caused by the input or the arguments: reported in one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default (unless its help already says it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            action.option_strings and "default" not in text and default is not None and default is not False
            and default is not argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
        ):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            text = f"{text} (default {shown})".strip()
        return text


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``rdopt: error: …``) and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"rdopt: error: {message} (see '{self.prog} --help')\n")


def _chosen_subcommand(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is one), if any."""
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--device":
            skip = True
            continue
        if a.startswith("-"):
            continue
        return a if a in SUBCOMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser. With ``argv``, only the named subcommand's module is imported (fast
    start-up); the others are listed by name and help."""
    from .. import __version__

    parser = OneLineParser(prog="rdopt", description="Optimization-based encoding for neural image codecs.")
    parser.add_argument("--version", action="version", version=f"rdopt {__version__}")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available, else cpu)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    chosen = _chosen_subcommand(argv) if argv is not None else None
    for name in SUBCOMMANDS:
        if chosen is not None and name != chosen:
            sub.add_parser(name, help=SUBCOMMAND_HELP[name])
            continue
        try:
            mod = importlib.import_module(f"rdopt.cli.{name}_cmd")
        except ModuleNotFoundError:
            continue
        mod.add_parser(sub)
    return parser


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and not isinstance(e, (FileNotFoundError, IsADirectoryError)):
        name = f": {str(e.filename)[:100]}" if e.filename else ""
        return f"{e.strerror}{name}"
    text = str(e).strip().splitlines()
    return text[0] if text else e.__class__.__name__


# System errors caused by the paths or the machine the user gave, not by a bug.
USER_ERRNOS = {errno.ENAMETOOLONG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT,
               errno.ENOTDIR, errno.ELOOP, errno.EISDIR, errno.ENOENT, errno.EFBIG, errno.EPIPE}


def is_user_error(e: BaseException) -> bool:
    if isinstance(e, (UserError, FileNotFoundError, IsADirectoryError, PermissionError)):
        return True
    if isinstance(e, OSError) and e.errno in USER_ERRNOS:
        return True
    for module, name in USER_ERRORS:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if cls is not None and isinstance(e, cls):
            return True
    return False


def _terminate_as_interrupt(signum, frame):
    """SIGTERM handler: what SIGINT's handler does (Python's raises KeyboardInterrupt; a command may have its
    own), or KeyboardInterrupt where SIGINT is ignored (background jobs of a non-interactive shell)."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        return handler(signal.SIGINT, frame)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (`kill`, a scheduler, a timeout) ends a command like Ctrl-C: through the interrupt paths, which
    # keep what is finished and remove temporary files; the previous handler is restored on return
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _flush_stdout(_main(argv))
    except KeyboardInterrupt:  # also during start-up (the lazy imports of the subcommand)
        print("rdopt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _flush_stdout(code: int) -> int:
    """Flush standard output before returning, so that a failed write (a full device, a closed pipe) is one line
    and exit status 2, not Python's "Exception ignored" and status 120 at exit; standard output is then
    pointed at /dev/null, where the interpreter's own flush at exit of what is still buffered cannot fail."""
    try:
        sys.stdout.flush()
        return code
    except OSError as e:
        if code != EXIT_USER_ERROR:  # else the error was reported already (a write of the run itself failed)
            print(f"rdopt: error: cannot write to standard output: {e.strerror or e}", file=sys.stderr)
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, sys.stdout.fileno())
            os.close(fd)
        except (OSError, ValueError):
            pass
        return EXIT_USER_ERROR


def _main(argv: list[str] | None) -> int:
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    given = [a for a in argv[argv.index(args.command) + 1:] if a == "--device" or a.startswith("--device=")]
    if given and any(a.startswith("--device") for a in extra):  # given after the subcommand
        after = argv[argv.index(given[0]) + 1:]
        dev = given[0].partition("=")[2] or (after[0] if after else "DEV")
        parser.error(f"--device goes before the subcommand: rdopt --device {dev} {args.command} …")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.run(args) or 0)
    except MemoryError:
        print("rdopt: error: out of memory (set RDOPT_MEMORY_LIMIT, or use a smaller image)", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        if not is_user_error(e):
            raise
        print(f"rdopt: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


def device_of(args) -> str:
    """The torch device of ``--device`` (checked: a device that cannot be used is a one-line error), or
    cuda if available, else cpu. Also applies ``--threads`` where the subcommand has it."""
    import torch

    threads = getattr(args, "threads", None)
    if threads:
        torch.set_num_threads(threads)
    if args.device:
        try:
            dev = torch.device(args.device)
        except RuntimeError as e:
            raise UserError(f"bad --device {args.device!r}: {_one_line(e)}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: no CUDA GPU is available to PyTorch here (use --device cpu)")
        try:
            torch.zeros(1, device=dev).cpu()  # the data must come back: the meta device allocates but holds none
        except (RuntimeError, AssertionError, ValueError) as e:  # (NotImplementedError is a RuntimeError)
            reason = _one_line(e).split(". ")[0]  # PyTorch's first sentence; the rest lists its backends
            raise UserError(f"--device {args.device} cannot be used: {reason}") from None
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


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def thread_count(text: str) -> int:
    """``--threads``: 1 … the CPUs this process may use. PyTorch starts the threads at once
    (``torch.set_num_threads(n)`` spawns a pool of n − 1 workers, OpenMP n − 1 more at the first parallel
    operation), so a huge n exhausts the system's tasks or address space — the run then fails wherever a thread or
    a mapping is needed next and crashes at exit (a pool joining workers it never created). More threads than
    CPUs never makes PyTorch faster."""
    v = positive_int(text)
    cpus = usable_cpus()
    if v > cpus:
        raise argparse.ArgumentTypeError(f"at most {cpus} (the CPUs this process can use), got {v}")
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
