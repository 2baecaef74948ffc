#!/usr/bin/env python3
"""What rollups at ingest cost (hub/store/__init__.py says why they are
built there): the store's `ingest` of realistic batches (one collection
cycle of this host each, for a fleet of simulated hosts, one batch every
10 s of their time) with rollups, and with `_roll` made a no-op; then a
read of a day of one series by step. Prints ms per batch, microseconds
per point, the database's size and the step read's time.

    .venv/bin/python -m bench.rollup [--hosts 50] [--cycles 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.buffer import one_cycle_of_records
from bench.common import fleet_batches, ingest_times
from hub.store import Limits
from hub.store.sqlite import SQLiteStore


class NoRollups(SQLiteStore):
    def _roll(self, host: str, rollups: dict[Any, Any]) -> None:
        pass


def run(cls: type[SQLiteStore], hosts: int, cycles: int, cycle: list[dict]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-rollup-") as tmp:
        store = cls(Path(tmp) / "hub.db")
        store.limits = Limits(retention=0.0)
        batches = fleet_batches(hosts, cycles, cycle)
        times = ingest_times(store, batches)
        reader = store.reader()
        start = time.perf_counter()
        page = reader.metrics("sim-0000", cycle[0]["name"], 0, 1e12, 10_000, None, 300.0, "avg")
        read_ms = (time.perf_counter() - start) * 1000
        points = sum(len(s["points"]) for s in page.items)
        reader.close()
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        store.close()
    total = sum(times)
    return {
        "ms_per_batch": 1000 * statistics.mean(times),
        "us_per_point": 1e6 * total / (len(batches) * len(cycle)),
        "mb": size,
        "read_ms": read_ms,
        "read_points": points,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=60)
    args = parser.parse_args()
    cycle = [r for r in one_cycle_of_records() if r["kind"] == "metric"]
    print(f"{len(cycle)} points a batch, {args.hosts} hosts x {args.cycles} batches")
    for label, cls in (("without rollups", NoRollups), ("with rollups", SQLiteStore)):
        r = run(cls, args.hosts, args.cycles, cycle)
        print(
            f"{label:16} {r['ms_per_batch']:6.2f} ms/batch  {r['us_per_point']:5.1f} us/point"
            f"  db {r['mb']:6.1f} MB  step=5m read of one series: {r['read_points']} points"
            f" in {r['read_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
