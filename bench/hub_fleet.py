#!/usr/bin/env python3
"""The fleet views at fleet size: `GET /v1/hosts`, `GET /v1/alerts` and
the hub's `GET /metrics` with `--hosts` hosts (default 2,000), each having
sent one collection cycle of this machine's host metrics.

The store is filled directly (the same `Store.ingest` the hub runs, one
batch per host), then the real `vigil hub run` serves it on loopback and
each view is fetched `--rounds` times. Prints the median and max time per
view and its size. Target (issue 14): `/v1/hosts` under 100 ms at 2,000
hosts.

    .venv/bin/python -m bench.hub_fleet [--hosts 2000] [--rounds 10]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import start_hub, timed, wait_healthy
from hub.store.sqlite import SQLiteStore


def fill(path: Path, hosts: int) -> int:
    cycle = one_cycle_of_records()
    store = SQLiteStore(path)
    now = time.time()
    for i in range(hosts):
        records = [dict(r, ts=now) for r in cycle]
        body = protocol.encode_batch(f"host-{i:05d}", "a" * 32, 1, records, "bench", now, 10.0)
        store.ingest(protocol.decode_batch(body), now)
    store.close()
    return len(cycle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-fleet-"))
    started = time.monotonic()
    per_host = fill(tmp / "hub.db", args.hosts)
    print(f"{args.hosts:,} hosts x {per_host} series, stored in {time.monotonic() - started:.1f} s")
    hub, url = start_hub(tmp, 'retention_raw = "0s"\n')
    try:
        wait_healthy(url, hub, timeout=60)
        print(f"{'view':14} {'median ms':>10} {'max ms':>8} {'bytes':>12}")
        for path in ("/v1/hosts", "/v1/alerts", "/metrics"):
            times, size = timed(url + path, args.rounds)
            print(
                f"{path:14} {statistics.median(times) * 1000:10.1f}"
                f" {max(times) * 1000:8.1f} {size:12,}"
            )
    finally:
        hub.terminate()
        hub.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
