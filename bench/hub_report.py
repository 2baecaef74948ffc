#!/usr/bin/env python3
"""The daily report at fleet size: `--hosts` hosts (default 200) x
`--checks` checks (10) x a day of runs every `--interval` (60 s), a few
log lines and alerts per host, plus `--fleet` hosts (2,000) that sent one
cycle of this machine's host metrics (bench/hub_fleet.py's `fill`).

The store is filled directly with real batches (protocol.encode_batch,
the same Store.ingest the hub runs), then:
- `vigil hub report daily --format json` runs as an operator runs it: its
  wall time and peak RSS (the child's ru_maxrss);
- the real `vigil hub run` serves GET /v1/reports/daily: its time, and the
  hub's RSS before and after;
- the availability of every check over the day is counted two ways, from
  the check_up rollups (what hub/sla.py reads) and from the check events
  (json_extract in SQLite), to show what the rollups save.

    .venv/bin/python -m bench.hub_report [--hosts 200] [--checks 10] [--interval 60]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from agent.core import protocol
from bench.common import start_hub, status_kib, wait_healthy
from bench.hub_fleet import fill as fill_fleet
from hub.store.sqlite import SQLiteReader, SQLiteStore

STREAM = "b" * 32
CHUNK = 2000  # records per batch


def runs(host: int, checks: int, day: float, interval: float) -> list[dict[str, Any]]:
    """A host's day of check runs (every 97th fails), oldest first, with a
    few log lines and one alert."""
    out: list[dict[str, Any]] = []
    t = day
    n = 0
    while t < day + 86400:
        for c in range(checks):
            ok = (n + c) % 97 != 0
            labels = {"check": f"check-{c}", "type": "http"}
            latency = 0.01 + ((n * 7 + c) % 100) / 1000
            out.append(
                {"kind": "check", "name": f"check-{c}", "type": "http", "ok": ok,
                 "status": "ok" if ok else "critical", "latency": latency, "message": "",
                 "attempts": [{"status": "ok", "message": "", "latency": latency}],
                 "labels": labels, "fields": {"status_code": 200}, "ts": t + c}
            )  # fmt: skip
            out.append(
                {"kind": "metric", "name": "check_up", "labels": labels, "value": float(ok),
                 "ts": t + c}
            )  # fmt: skip
            out.append(
                {"kind": "metric", "name": "check_duration_seconds", "labels": labels,
                 "value": latency, "ts": t + c}
            )  # fmt: skip
        if n % 60 == 0:
            out.append(
                {"kind": "event", "type": "log", "ts": t + 30, "severity": "high",
                 "message": f"ERROR request {n} failed after {n % 13} ms on 10.0.{host % 250}.1",
                 "fields": {"file": "/var/log/app.log"}}
            )  # fmt: skip
        n += 1
        t += interval
    fields = {"rule": "HighLoad", "labels": {}, "fingerprint": f"fp-{host}", "since": day}
    for state, at in (("firing", day + 3600), ("resolved", day + 5400)):
        out.append(
            {"kind": "event", "type": "alert", "ts": at, "severity": "high",
             "message": f"HighLoad {state}", "fields": {**fields, "state": state}}
        )  # fmt: skip
    out.sort(key=lambda r: r["ts"])
    return out


def fill(path: Path, hosts: int, checks: int, day: float, interval: float) -> int:
    store = SQLiteStore(path)
    total = 0
    try:
        for h in range(hosts):
            records, seq = runs(h, checks, day, interval), 1
            for i in range(0, len(records), CHUNK):
                chunk = records[i : i + CHUNK]
                at = chunk[-1]["ts"]
                body = protocol.encode_batch(f"checks-{h:04d}", STREAM, seq, chunk, "bench", at)
                store.ingest(protocol.decode_batch(body), at)
                seq += len(chunk)
            total += len(records)
    finally:
        store.close()
    return total


def two_ways(path: Path, start: float, end: float) -> None:
    """Runs and passing runs of every check over the day: as hub/sla.py
    reads them (the rollups), and from the check events."""
    reader = SQLiteReader(path)
    began = time.monotonic()
    rows = reader.check_totals(start, end)
    took = time.monotonic() - began
    print(
        f"  availability of {len(rows):,} checks from the check_up rollups: {took * 1000:,.0f} ms"
    )
    began = time.monotonic()
    rows = reader.db.execute(
        "SELECT host, json_extract(body, '$.name'), count(*), sum(json_extract(body, '$.ok'))"
        " FROM events WHERE ts >= ? AND ts < ? AND kind = 'check' GROUP BY 1, 2",
        (start, end),
    ).fetchall()
    took = time.monotonic() - began
    print(f"  availability of {len(rows):,} checks from the check events: {took * 1000:,.0f} ms")
    began = time.monotonic()
    n = sum(1 for _ in reader.check_latencies(start, end))
    took = time.monotonic() - began
    print(f"  latencies of {n:,} passing runs from the check events (p95): {took * 1000:,.0f} ms")
    reader.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--checks", type=int, default=10)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--fleet", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-report-"))
    day = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp()
    began = time.monotonic()
    records = fill(tmp / "hub.db", args.hosts, args.checks, start, args.interval)
    per_host = fill_fleet(tmp / "hub.db", args.fleet)
    size = (tmp / "hub.db").stat().st_size
    print(
        f"{args.hosts} hosts x {args.checks} checks every {args.interval:g} s for {day}"
        f" ({records:,} records) + {args.fleet:,} hosts x {per_host} series:"
        f" stored in {time.monotonic() - began:.0f} s, {size / 2**20:,.0f} MiB"
    )
    two_ways(tmp / "hub.db", start, start + 86400)

    config = tmp / "hub.toml"
    hub, url = start_hub(
        tmp, 'retention_raw = "0s"\nretention_events = "0s"\n[hub.reports]\ntimezone = "UTC"\n'
    )
    try:
        wait_healthy(url, hub, timeout=120)
        cli = [sys.executable, "-m", "agent", "hub", "report", "daily", "--config", str(config)]
        cli += ["--date", day.isoformat(), "--format", "json"]
        began = time.monotonic()
        child = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
        child.returncode = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - began
        rss = usage.ru_maxrss
        print(
            f"vigil hub report daily: {took:.2f} s, peak RSS {rss / 1024:.1f} MiB,"
            f" {len(out):,} bytes (exit {child.returncode})"
        )
        idle = status_kib(hub.pid)
        for attempt in (1, 2):
            began = time.monotonic()
            with urllib.request.urlopen(f"{url}/v1/reports/daily?date={day}", timeout=600) as r:
                body = r.read()
            took = time.monotonic() - began
            print(f"GET /v1/reports/daily (#{attempt}): {took:.2f} s, {len(body):,} bytes")
        after, peak = status_kib(hub.pid), status_kib(hub.pid, "VmHWM")
        print(
            f"hub RSS: {idle / 1024:.1f} MiB before the reports, {after / 1024:.1f} MiB after"
            f" (peak {peak / 1024:.1f})"
        )
    finally:
        hub.terminate()
        hub.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)  # gigabytes at the default size
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
