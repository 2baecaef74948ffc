"""Helpers the benchmarks share."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from agent.core import protocol
from agent.core.protocol import Batch
from hub.store import Store


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


def timed(url: str, rounds: int) -> tuple[list[float], int]:
    """`rounds` GETs of `url`: their times in seconds, sorted, and the body's size."""
    times, size = [], 0
    for _ in range(rounds):
        start = time.monotonic()
        with urllib.request.urlopen(url, timeout=120) as resp:
            size = len(resp.read())
        times.append(time.monotonic() - start)
    return sorted(times), size


def status_kib(pid: int, key: str = "VmRSS") -> int:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM, ...) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the hub exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the hub did not answer /healthz")


def start_hub(tmp: Path, extra: str = "") -> tuple[subprocess.Popen[bytes], str]:
    """`vigil hub run` on a free loopback port, its data in `tmp` and `extra`
    lines in its [hub] table; (the process, its URL). Wait with wait_healthy."""
    port = free_port()
    (tmp / "hub.toml").write_text(
        f'[hub]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{tmp}"\n{extra}'
    )
    hub = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "run", "--config", str(tmp / "hub.toml")],
        stdout=subprocess.DEVNULL,
    )
    return hub, f"http://127.0.0.1:{port}"


def fleet_batches(hosts: int, cycles: int, cycle: list[dict[str, Any]]) -> list[Batch]:
    """`cycles` batches of `cycle` per simulated host (`sim-0000`...), 10 s
    apart and ending now, as the hub decodes them, in arrival order."""
    streams = [secrets.token_hex(16) for _ in range(hosts)]
    t0 = time.time() - cycles * 10.0
    batches = []
    for c in range(cycles):
        for h in range(hosts):
            now = t0 + c * 10.0
            records = [dict(r, ts=now) for r in cycle]
            body = protocol.encode_batch(
                f"sim-{h:04d}", streams[h], c * len(cycle) + 1, records, "bench", now
            )
            batches.append(protocol.decode_batch(body))
    return batches


def ingest_times(store: Store, batches: list[Batch]) -> list[float]:
    """Seconds each `store.ingest` took, one batch after the other."""
    times = []
    for b in batches:
        start = time.perf_counter()
        store.ingest(b, time.time())
        times.append(time.perf_counter() - start)
    return times
