"""Helpers the benchmarks share."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, in nanoseconds from schedstat
    (/proc/PID/stat counts in 10 ms ticks: too coarse for a few ms a cycle)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def status_kib(pid: int, key: str = "VmRSS") -> int:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM, ...) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
