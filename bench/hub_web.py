#!/usr/bin/env python3
"""The web page at fleet size: `GET /` (the fleet page) with `--hosts`
hosts (default 2,000), side by side with `GET /v1/hosts`, and each other
page once the fleet is there.

The store is filled as bench/hub_fleet.py fills it (`fill`: one collection
cycle of this machine's host metrics per host), plus an hour of CPU per
host (one batch of 12 points, 5 minutes apart) so every row has its
sparkline; then the real `vigil hub run` serves it on loopback and each
page is fetched `--rounds` times. Prints median, p95 and max per page and
its size. Target (issue 14): the fleet page's HTML in under 1 s at 2,000
hosts.

    .venv/bin/python -m bench.hub_web [--hosts 2000] [--rounds 10]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from agent.core import protocol
from bench.common import percentile, start_hub, timed, wait_healthy
from bench.hub_fleet import fill
from hub.store.sqlite import SQLiteStore


def add_cpu_hour(path: Path, hosts: int) -> None:
    """An hour of cpu_usage_percent{cpu="all"} per host, one batch each."""
    store = SQLiteStore(path)
    now = time.time()
    for i in range(hosts):
        records = [
            {"kind": "metric", "name": "cpu_usage_percent", "labels": {"cpu": "all"},
             "type": "gauge", "ts": now - 300 * k, "value": random.uniform(0, 100)}
            for k in range(12)
        ]  # fmt: skip
        body = protocol.encode_batch(f"host-{i:05d}", "c" * 32, 1, records, "bench", now, 10.0)
        store.ingest(protocol.decode_batch(body), now)
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-web-"))
    started = time.monotonic()
    per_host = fill(tmp / "hub.db", args.hosts)
    add_cpu_hour(tmp / "hub.db", args.hosts)
    print(
        f"{args.hosts:,} hosts x {per_host} series + an hour of CPU,"
        f" stored in {time.monotonic() - started:.1f} s"
    )
    hub, url = start_hub(tmp, 'retention_raw = "0s"\n')
    try:
        wait_healthy(url, hub, timeout=60)
        print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'bytes':>12}")
        pages = [
            "/",
            "/v1/hosts",
            "/?sort=cpu&order=desc",
            "/?q=host-0001&status=up",
            "/hosts/host-00001",
            "/hosts/host-00001?range=24h",
            "/hosts/host-00001?range=7d",
            "/alerts",
            "/checks",
            "/events",
            "/events?q=nothing-matches",
        ]
        figures = {}
        for path in pages:
            times, size = timed(url + path, args.rounds)
            figures[path] = statistics.median(times)
            print(
                f"{path:34} {figures[path] * 1000:10.1f} {percentile(times, 0.95) * 1000:8.1f}"
                f" {times[-1] * 1000:8.1f} {size:12,}"
            )
        print(
            f"fleet page / /v1/hosts: {figures['/'] / figures['/v1/hosts']:.1f}x"
            f" (target: the fleet page under 1 s at 2,000 hosts)"
        )
    finally:
        hub.terminate()
        hub.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
