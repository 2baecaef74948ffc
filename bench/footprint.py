#!/usr/bin/env python3
"""Memory footprint: `vigil run` with the default configuration (host
metrics, default alert rules, no hub, no logs, no checks: what `vigil run`
does out of the box), and `vigil hub run` idle, then steady after a
fleet's batches, and the peak.

The agent runs for `--agent-seconds` (several 10 s collection cycles) and
its settled VmRSS is read. Target (issue 12): under 32 MB.

Starts the real hub on loopback with a default config, waits until it
answers /healthz and settles, reads VmRSS; then `--hosts` simulated agents
each push `--rounds` batches (one collection cycle of this host each,
msgpack + zstd, as the shipper sends them), 8 at a time; after they stop,
RSS is read again once it settles. Target (issue 12): steady under 45 MB.
MB here are MiB (VmRSS kB / 1024), as in the other benchmarks.

    .venv/bin/python -m bench.footprint [--hosts 50] [--rounds 20] [--agent-seconds 45]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import start_hub, status_kib, wait_healthy
from hub.auth import host_token

TARGET_MB = 45
AGENT_TARGET_MB = 32


def agent_rss_kib(seconds: float) -> tuple[int, int]:
    """Settled and peak VmRSS of `vigil run` with only a state directory set."""
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-footprint-agent-"))
    (tmp / "agent.toml").write_text(f'[agent]\nstate_dir = "{tmp / "state"}"\n')
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(tmp / "agent.toml")],
        stdout=subprocess.DEVNULL,
    )
    try:
        steady = settled_rss_kib(agent.pid, seconds)
        return steady, status_kib(agent.pid, "VmHWM")
    finally:
        agent.terminate()
        agent.wait(30)


def settled_rss_kib(pid: int, seconds: float = 3.0) -> int:
    """VmRSS once it has stopped moving: the last of a few readings."""
    time.sleep(seconds)
    readings = []
    for _ in range(5):
        readings.append(status_kib(pid))
        time.sleep(0.2)
    return readings[-1]


def push(url: str, secret: bytes, host: str, rounds: int, cycle: list[dict]) -> int:
    token = host_token(host, secret)
    stream, seq, failed = secrets.token_hex(16), 1, 0
    for _ in range(rounds):
        now = time.time()
        records = [dict(r, ts=now) for r in cycle]
        body = protocol.compress(protocol.encode_batch(host, stream, seq, records, "bench", now))
        request = urllib.request.Request(
            url + "/v1/ingest",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Encoding": "zstd"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                resp.read()
            seq += len(records)
        except OSError:
            failed += 1
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--agent-seconds", type=float, default=45.0)
    args = parser.parse_args()
    agent_steady, agent_peak = agent_rss_kib(args.agent_seconds)
    print(f"vigil run, default configuration, after {args.agent_seconds:.0f} s:")
    print(f"{'RSS':>18} {agent_steady / 1024:6.1f} MB   (target < {AGENT_TARGET_MB} MB)")
    print(f"{'peak (VmHWM)':>18} {agent_peak / 1024:6.1f} MB")
    cycle = one_cycle_of_records()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-footprint-"))
    hub, url = start_hub(tmp)
    try:
        wait_healthy(url, hub)
        idle = settled_rss_kib(hub.pid)
        secret = (tmp / "hub.secret").read_bytes().strip()
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            failed = sum(
                pool.map(
                    lambda i: push(url, secret, f"sim-{i:04d}", args.rounds, cycle),
                    range(args.hosts),
                )
            )
        elapsed = time.monotonic() - start
        steady = settled_rss_kib(hub.pid)
        peak = status_kib(hub.pid, "VmHWM")
    finally:
        hub.terminate()
        hub.wait(30)
    batches = args.hosts * args.rounds
    print(
        f"vigil hub run: {batches} batches of {len(cycle)} records from {args.hosts} hosts"
        f" in {elapsed:.1f} s, {failed} failed"
    )
    print(f"{'RSS idle':>18} {idle / 1024:6.1f} MB")
    print(f"{'RSS after ingest':>18} {steady / 1024:6.1f} MB   (target < {TARGET_MB} MB)")
    print(f"{'peak (VmHWM)':>18} {peak / 1024:6.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
