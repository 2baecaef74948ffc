#!/usr/bin/env python3
"""Disk buffer throughput: append and drain, under each fsync policy.

Prints records/s and MB/s for appending batches like the agent's (one
frame per collection cycle) and for draining (read + ack), and the time to
drain one hour of a host at a 10 s interval: from the buffer alone, and end
to end (a real agent pushing that backlog to a real hub on loopback).
Target (issue #3): draining is at least 50 times faster than filling, i.e.
an hour of backlog drains in under 72 s.

    .venv/bin/python -m bench.buffer
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from agent.buffer import DiskBuffer
from agent.config import Config
from agent.runtime import build_collectors
from collectors.procfs import default_source

HOUR_AT_10S = 360  # collection cycles in an hour


def one_cycle_of_records() -> list[dict]:
    """What one collection cycle of this host produces, as the agent buffers it."""
    config = Config()
    source = default_source()
    collectors = build_collectors(config, source)
    for c in collectors:  # twice: rates need two samples
        c.collect(time.time(), time.monotonic())
    out: list[dict] = []
    for c in collectors:
        out.extend(r.to_dict() for r in c.collect(time.time(), time.monotonic()))  # type: ignore[union-attr]
    return out


def run(policy: str, cycle: list[dict], frames: int) -> tuple[float, float, int]:
    directory = Path(tempfile.mkdtemp(prefix="vigil-bench-buffer-"))
    try:
        buf = DiskBuffer(directory, max_bytes=1 << 30, fsync=policy)  # type: ignore[arg-type]
        start = time.perf_counter()
        for _ in range(frames):
            buf.append(cycle)
        append_s = time.perf_counter() - start
        size = buf.bytes
        start = time.perf_counter()
        while (batch := buf.read(max_records=5000, max_bytes=1 << 20)) is not None:
            buf.ack(batch.last)
        drain_s = time.perf_counter() - start
        buf.close()
        return append_s, drain_s, size
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    cycle = one_cycle_of_records()
    print(f"one collection cycle here: {len(cycle)} records")
    print(
        f"{'fsync':9} {'append rec/s':>13} {'MB/s':>7} {'drain rec/s':>12} {'MB/s':>7}"
        f" {'hour drains in':>15} {'drain/fill':>11}"
    )
    for policy in ("batch", "interval"):
        append_s, drain_s, size = run(policy, cycle, HOUR_AT_10S)
        n = len(cycle) * HOUR_AT_10S
        mb = size / 1e6
        print(
            f"{policy:9} {n / append_s:13,.0f} {mb / append_s:7.1f} {n / drain_s:12,.0f}"
            f" {mb / drain_s:7.1f} {drain_s:13.2f} s {3600 / drain_s:10,.0f}x"
        )
    print(
        "drain/fill: an hour's backlog (filled over 3600 s) drains that many times faster;"
        " target >= 50x"
    )
    end_to_end(cycle)
    return 0


def end_to_end(cycle: list[dict]) -> None:
    """An hour of backlog in a real agent's buffer, then a hub appears."""
    import json
    import subprocess
    import sys
    import urllib.request

    from bench.common import free_port
    from hub.auth import host_token

    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-e2e-"))
    hub_port, api_port = free_port(), free_port()
    (tmp / "hub.toml").write_text(
        f'[hub]\nlisten = "127.0.0.1:{hub_port}"\ndata_dir = "{tmp}/hub"\n'
    )
    (tmp / "hub").mkdir()
    (tmp / "hub" / "hub.secret").write_text("bench-secret-0123456789abcdef\n")
    token = host_token("bench", b"bench-secret-0123456789abcdef")
    (tmp / "agent.toml").write_text(
        f'[agent]\nhost_id = "bench"\nstate_dir = "{tmp}/state"\ninterval = "1h"\n'
        f'[hub]\nurl = "http://127.0.0.1:{hub_port}"\ntoken = "{token}"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
    )
    with DiskBuffer(tmp / "state" / "buffer", max_bytes=1 << 30) as buf:
        now = time.time()
        for i in range(HOUR_AT_10S):
            buf.append([dict(r, ts=now - 3600 + 10 * i) for r in cycle])
        backlog = buf.pending_records
    commands = ((["hub", "run"], "hub.toml"), (["run"], "agent.toml"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "agent", *args, "--config", str(tmp / conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for args, conf in commands
    ]
    start = time.monotonic()
    try:
        while time.monotonic() - start < 300:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/status", timeout=5) as r:
                    ship = json.load(r)["shipper"]
                if ship["sent_records"] >= backlog:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        took = time.monotonic() - start
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"end to end: {backlog:,} records (an hour at 10 s) delivered to a hub in {took:.1f} s"
        f" (both processes starting included): {3600 / took:,.0f}x faster than filled"
    )


if __name__ == "__main__":
    raise SystemExit(main())
