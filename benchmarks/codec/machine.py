"""What else ran on the machine while a benchmark ran (its records state the load next to every timing)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (``?`` where /proc is not readable)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def background_jobs(exclude: str) -> list[str]:
    """Other rdopt / pytest processes (training runs, test suites) as short command lines, without this process and
    without command lines containing ``exclude`` (the benchmark's own script)."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    except OSError:
        return []
    me = str(os.getpid())
    jobs = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid != me and ("rdopt" in args or "pytest" in args) and exclude not in args:
            jobs.append(args[:140])
    return jobs
