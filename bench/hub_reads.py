#!/usr/bin/env python3
"""Hub ingest latency while the read API is hammered (issue 13, item 4).

Starts `vigil hub run` on loopback on a database already holding
`--points` metric points and `--events` events of a bulk host (written
directly, as a busy fleet leaves it). A well-behaved client posts real
batches (one collection cycle of this host, msgpack + zstd) one after
another and times each POST until its 200, first with nothing else going on
(baseline), then while `--readers` threads read at the maximum page size
without pause: unfiltered metrics and events, following `next`. Prints
median and max latency side by side with the ratio, and how many pages
the readers got.

    .venv/bin/python -m bench.hub_reads [--batches 100] [--readers 4] [--points 1000000]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import start_hub, wait_healthy
from hub.auth import host_token
from hub.store.sqlite import SQLiteStore

T0 = 1767225600.0


def fill(path: Path, points: int, events: int) -> None:
    """A hub database as a busy fleet leaves it, written directly (fast);
    tests/e2e/test_hub_reads.py fills its hub the same way."""
    SQLiteStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO metrics VALUES ('bulk-01', 'm', ?, ?, ?, 'gauge')",
        ((f'{{"i":"{i % 100}"}}', T0 + i // 100, float(i)) for i in range(points)),
    )
    body = json.dumps({"kind": "event", "type": "log", "line": "x" * 300})
    db.executemany(
        "INSERT INTO events VALUES ('bulk-01', ?, 'log', ?)",
        ((T0 + i, body) for i in range(events)),
    )
    db.execute("COMMIT")
    db.close()


class Client:
    """One host posting real batches in sequence, timing each until its 200."""

    def __init__(self, url: str, secret: bytes, cycle: list[dict]) -> None:
        self.url, self.cycle = url, cycle
        self.token = host_token("web-01", secret)
        self.stream, self.seq = secrets.token_hex(16), 1

    def run(self, batches: int) -> tuple[list[float], int]:
        latencies, failed = [], 0
        for _ in range(batches):
            now = time.time()
            records = [dict(r, ts=now) for r in self.cycle]
            body = protocol.compress(
                protocol.encode_batch("web-01", self.stream, self.seq, records, "bench", now)
            )
            request = urllib.request.Request(
                self.url + "/v1/ingest",
                data=body,
                headers={"Authorization": f"Bearer {self.token}", "Content-Encoding": "zstd"},
            )
            start = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=60) as resp:
                    resp.read()
                latencies.append(time.monotonic() - start)
                self.seq += len(records)
            except OSError:
                failed += 1
            time.sleep(0.05)  # an agent's batches come apart
        return latencies, failed


def reader(url: str, path: str, stop: threading.Event, pages: list[int]) -> None:
    cursor = ""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{url}{path}{cursor}", timeout=120) as resp:
                body = json.load(resp)
        except OSError:
            continue
        pages.append(1)
        cursor = f"&cursor={body['next']}" if body.get("next") else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-hub-reads-"))
    t = time.monotonic()
    fill(tmp / "hub.db", args.points, args.events)
    print(
        f"database: {args.points:,} points and {args.events:,} events"
        f" ({(tmp / 'hub.db').stat().st_size / 2**20:.0f} MiB, filled in"
        f" {time.monotonic() - t:.1f} s)"
    )
    hub, url = start_hub(tmp)
    try:
        wait_healthy(url, hub, timeout=120)
        client = Client(url, (tmp / "hub.secret").read_bytes().strip(), one_cycle_of_records())
        client.run(10)  # warm up
        base, base_failed = client.run(args.batches)
        stop, pages = threading.Event(), []
        paths = ["/v1/metrics?limit=10000", "/v1/events?limit=1000"]
        threads = [
            threading.Thread(target=reader, args=(url, paths[i % 2], stop, pages), daemon=True)
            for i in range(args.readers)
        ]
        for th in threads:
            th.start()
        time.sleep(1.0)  # the reads under way
        loaded, loaded_failed = client.run(args.batches)
        stop.set()
        for th in threads:
            th.join(120)
    finally:
        hub.terminate()
        hub.wait(30)
    print(
        f"{args.batches} batches of {len(one_cycle_of_records())} records, one at a time;"
        f" {args.readers} readers at the maximum page size, {len(pages)} pages read"
    )
    print(f"{'':>26} {'baseline':>10} {'heavy reads':>12} {'ratio':>7}")
    for label, f in (
        ("ingest latency median ms", statistics.median),
        ("ingest latency max ms", max),
    ):
        b, lo = f(base) * 1000, f(loaded) * 1000
        print(f"{label:>26} {b:10.1f} {lo:12.1f} {lo / b:7.2f}")
    print(f"{'failed batches':>26} {base_failed:10d} {loaded_failed:12d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
