"""Safe file I/O for the command line: never destroy an input, check outputs before the work starts,
write atomically with the user's umask, and keep memory within a budget.

This module imports neither torch nor numpy (``rdopt info`` uses it and must start fast).

* :func:`check_output` runs *before* any work: it refuses an output that is a directory or the input
  itself (also through symbolic or hard links), resolves a symbolic link to the file it names (the
  write goes *through* the link, the link stays), and checks that the directory exists, is writable
  (a probe file is created and removed: this catches read-only file systems too) and that the file
  name fits the file system.
* :func:`atomic_write` writes a temporary file in the target's directory and renames it over the
  target: the output appears complete or not at all. A new file gets the mode ``0o666 & ~umask``
  (as ``open()`` would create it); an existing file keeps its mode (:func:`output_mode`, also used by the
  video writers).
* ``-`` means standard input / output (:data:`STDIO`).
* :func:`memory_budget` is the memory a run may use: the available RAM, lowered by ``RLIMIT_AS`` /
  ``RLIMIT_DATA`` when those are set, or ``RDOPT_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

STDIO = "-"
TEMP_PREFIX = ".rdopt-"  # short: the temporary name must fit wherever the final name fits


class OutputError(Exception):
    """An output path that cannot or must not be written (reported in one line)."""


class MemoryBudgetError(Exception):
    """A job whose estimated memory exceeds the budget (reported in one line, before allocating)."""


def is_stdio(path) -> bool:
    return str(path) == STDIO


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # follows symbolic links; equal (st_dev, st_ino) also catches hard links
    except OSError:
        return False


def check_output(path, inputs=(), *, what: str = "output") -> Path | None:
    """Validate an output path before any work; return the path to write (a symbolic link resolved to
    its target), or ``None`` for standard output. Raises :class:`OutputError` with a one-line reason."""
    if is_stdio(path):
        return None
    try:
        return _check_output(Path(path), inputs, what)
    except OSError as e:  # a path the system refuses outright (name too long, loops, …)
        raise OutputError(f"cannot use {what} {str(path)[:80]}: {e.strerror or e}") from None


def _check_output(p: Path, inputs, what: str) -> Path:
    parent = p.absolute().parent
    if parent.is_dir():
        _check_name_length(parent, p.name)
    if p.is_dir():
        raise OutputError(f"{what} is a directory: {p} (give a file name inside it)")
    for src in inputs:
        if src is not None and not is_stdio(src) and _same_file(p, Path(src)):
            raise OutputError(f"{what} {p} is the input file {src} (also via a link): refusing to overwrite it")
    target = Path(os.path.realpath(p)) if p.is_symlink() else p.absolute()
    parent = target.parent
    if not parent.is_dir():
        if p.is_symlink():
            raise OutputError(f"{what} {p} is a symbolic link into a missing directory: {parent}")
        raise OutputError(f"output directory does not exist: {parent}")
    if target.exists() and not target.is_file():
        raise OutputError(f"{what} is not a regular file: {target}")
    _check_name_length(parent, target.name)
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write to directory {parent}: {e.strerror or e}") from None
    return target


def _check_name_length(parent: Path, name: str) -> None:
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    n = len(os.fsencode(name))
    if n > name_max:
        raise OutputError(f"file name too long: {n} bytes, this file system allows {name_max} ({name[:40]}…)")


def current_umask() -> int:
    """The process umask (read without changing it where the system allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def output_mode(path, *, folder: bool = False) -> int:
    """The permission bits an output written at ``path`` should get: those of the file (or folder) it
    replaces, else what ``open()`` (``mkdir()`` for a folder) would create under the umask (a temporary
    file of :mod:`tempfile` is 0600, a temporary folder 0700: chmod them to this before renaming)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return (0o777 if folder else 0o666) & ~current_umask()


def atomic_write(path, data: bytes, *, binary_tty_ok: bool = False) -> None:
    """Write ``data`` to ``path`` (``-``: standard output) so that it appears complete or not at all.

    A symbolic link is written through (its target is replaced, the link stays)."""
    atomic_write_with(path, lambda f: f.write(data), binary_tty_ok=binary_tty_ok)


def atomic_write_with(path, fill, *, binary_tty_ok: bool = False) -> None:
    """:func:`atomic_write` for content written by ``fill(binary_file)`` (e.g. a header then a copy of a
    spooled temporary file), so that large outputs need not be held in memory."""
    if is_stdio(path):
        out = sys.stdout.buffer
        if not binary_tty_ok and out.isatty():
            raise OutputError("refusing to write binary data to a terminal (redirect standard output or use -o FILE)")
        try:
            fill(out)
            out.flush()
        except OSError as e:  # a full device, a closed pipe
            raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None
        return
    p = Path(path)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    mode = output_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=target.absolute().parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            raise OutputError(f"cannot write {path}: {e.strerror}") from None  # a full disk, a file size limit
        raise


def read_input_bytes(path, *, what: str = "file") -> bytes:
    """All bytes of a file, or of standard input for ``-``; one-line errors for the usual mistakes."""
    if is_stdio(path):
        if sys.stdin.isatty():
            raise OutputError(f"standard input is a terminal: pipe a {what} into '-' or give a file name")
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.is_dir():
        raise IsADirectoryError(f"is a directory, not a {what}: {p}")
    kind = special_file(p)
    if kind is not None:
        raise OutputError(special_input_message(p, kind))
    return p.read_bytes()


def special_file(path) -> str | None:
    """What ``path`` is when it is a FIFO, a device or a socket (``"a character device"``, …); ``None`` for a
    regular file, a directory or a missing path. Inputs refuse these: reading a FIFO blocks until a writer
    opens it, and a device such as /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


def special_input_message(path, kind: str) -> str:
    return f"{path} is {kind}, not a regular file (give a file, or - to read standard input)"


# ---------------------------------------------------------------------------------------- memory
def _parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1024 ** ("KMGT".index(t[-1]) + 1)
        t = t[:-1]
    return int(float(t) * mult)


def _proc_kb(path: str, key: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_budget() -> int:
    """Bytes this process may still allocate for one job (see the module docstring)."""
    env = os.environ.get("RDOPT_MEMORY_LIMIT")
    if env:
        try:
            return max(0, _parse_size(env))
        except ValueError:
            raise MemoryBudgetError(f"RDOPT_MEMORY_LIMIT is not a size: {env!r} (e.g. 4G)") from None
    budget = _proc_kb("/proc/meminfo", "MemAvailable")
    if budget is None:
        budget = 1 << 62
    try:
        import resource

        vm = _proc_kb("/proc/self/status", "VmSize") or 0
        rss = _proc_kb("/proc/self/status", "VmRSS") or 0
        for lim, used in ((resource.RLIMIT_AS, vm), (resource.RLIMIT_DATA, rss)):
            soft, _ = resource.getrlimit(lim)
            if soft != resource.RLIM_INFINITY:
                budget = min(budget, max(0, soft - used))
    except (ImportError, OSError, ValueError):
        pass
    return budget


def check_memory(needed: int, what: str) -> None:
    """Raise :class:`MemoryBudgetError` (before anything is allocated) if ``needed`` bytes exceed the budget."""
    budget = memory_budget()
    if needed > budget:
        raise MemoryBudgetError(
            f"{what} needs about {_human(needed)} of memory, more than the {_human(budget)} available "
            "(set RDOPT_MEMORY_LIMIT to change the budget)"
        )


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
