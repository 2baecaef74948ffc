#!/usr/bin/env python3
"""Forwarding (issue 15, item 1): what it costs ingest, and how fast the
forwarder drains a hub into VictoriaMetrics.

1. Ingest: the store's `ingest` of realistic batches (one collection cycle
   of this host each, `--hosts` simulated hosts, `--cycles` batches each),
   with the `batches` table written in each batch's transaction, and
   without it (the store as it was). Prints ms per batch.
2. Throughput: a hub store filled by `bench.hub_fleet.fill` (`--fleet`
   hosts, one batch of one cycle each), then the real
   `vigil hub run` with a `[[hub.forward]]` into Debian's victoria-metrics
   on loopback; the time from start until every sample is delivered
   (`vigil_hub_forward_sent_samples_total`). Prints samples/s, the hub's
   and VictoriaMetrics' CPU, and, for where the time goes, the
   forwarder's own work per sample (reading, encoding, compressing,
   measured in-process without sending).

Target (issue 15): keep up with 100,000 samples/s.

    .venv/bin/python -m bench.hub_forward [--hosts 50] [--cycles 40] [--fleet 10000]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from agent.core import protocol
from agent.core.worker import Worker
from bench.buffer import one_cycle_of_records
from bench.common import cpu_seconds, fleet_batches, ingest_times, start_hub, wait_healthy
from bench.hub_fleet import fill
from bench.tsdb import VictoriaMetrics
from hub.config import ForwardConfig
from hub.store import EventRow, Limits, MetricRow, newest
from hub.store.sqlite import SQLiteStore


class NoBatches(SQLiteStore):
    """`_append` as it was before forwarding: no `batches` row, rowids by SQLite."""

    def _append(
        self,
        host: str,
        stream: str,
        metrics: list[MetricRow],
        events: list[EventRow],
        mark: int,
        lost: int,
    ) -> None:
        db = self.db
        db.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", [(host, *m) for m in metrics]
        )
        self._append_events(host, events)
        latest = newest(metrics)
        db.executemany(
            "INSERT INTO series (host, name, labels, last_ts, last_value, type)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (host, name, labels) DO UPDATE SET"
            " last_value = CASE WHEN excluded.last_ts >= last_ts"
            " THEN excluded.last_value ELSE last_value END,"
            " type = excluded.type, last_ts = max(last_ts, excluded.last_ts)",
            [(host, m.name, m.labels, m.ts, m.value, m.type) for m in latest.values()],
        )
        db.execute(
            "INSERT INTO streams VALUES (?, ?, ?, ?) ON CONFLICT (host, stream) DO UPDATE"
            " SET last_seq = max(last_seq, excluded.last_seq), lost = lost + excluded.lost",
            (host, stream, mark, lost),
        )


def ingest_cost(cls: type[SQLiteStore], hosts: int, cycles: int, cycle: list[dict]) -> float:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-forward-") as tmp:
        store = cls(Path(tmp) / "hub.db")
        store.limits = Limits(retention=0.0)
        batches = fleet_batches(hosts, cycles, cycle)
        times = ingest_times(store, batches)
        store.close()
    return 1000 * statistics.mean(times)


def forwarder_work(db: Path, per_send: int) -> tuple[float, float, int]:
    """The forwarder's own work, without sending: (us per sample collected,
    of which compressing, samples)."""
    from hub.forward import remote_write
    from hub.forward.forwarder import Forwarder

    store = SQLiteStore(db)
    config = ForwardConfig(name="bench", url="http://127.0.0.1:9", max_samples_per_send=per_send)
    forwarder = Forwarder(config, store, Worker("bench-store"))
    forwarder.reader = store.reader()
    compress = remote_write.compress
    squeezed = [0.0]

    def timed(body: bytes) -> bytes:
        start = time.perf_counter()
        try:
            return compress(body)
        finally:
            squeezed[0] += time.perf_counter() - start

    remote_write.compress = timed  # type: ignore[assignment]
    samples = 0
    start = time.perf_counter()
    try:
        while (send := forwarder.collect()) is not None:
            samples += send.samples
            pass  # collect moves `ahead` itself
    finally:
        remote_write.compress = compress  # type: ignore[assignment]
    elapsed = time.perf_counter() - start
    forwarder.reader.close()
    forwarder.thread.shutdown()
    store.close()
    return 1e6 * elapsed / max(1, samples), 1e6 * squeezed[0] / max(1, samples), samples


def delivered(db: Path, forward: str) -> int:
    """Samples the forward has delivered, from its cursors in the hub's
    database (read-only; polling the hub's /metrics would render the whole
    fleet each time and cost the hub more than forwarding)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (n,) = conn.execute(
            "SELECT coalesce(sum(b.hi - b.lo + 1), 0) FROM forward_cursors c JOIN batches b"
            " ON b.host = c.host AND b.stream = c.stream AND b.seq <= c.seq"
            " WHERE c.forward = ?",
            (forward,),
        ).fetchone()
    return int(n)


def next_cycle(db: Path, hosts: int, per_host: int) -> int:
    """Another batch of each host `fill` made (its stream's next records,
    10 s later); the samples stored."""
    cycle = one_cycle_of_records()
    store = SQLiteStore(db)
    now = time.time()
    stored = 0
    for i in range(hosts):
        records = [dict(r, ts=now + 10) for r in cycle[:per_host]]
        body = protocol.encode_batch(f"host-{i:05d}", "a" * 32, per_host + 1, records, "bench", now)
        stored += store.ingest(protocol.decode_batch(body), now).stored
    store.close()
    return stored


def drain(
    tmp: Path, db: Path, vm: VictoriaMetrics, forward: str, total: int, us: float, what: str,
    before: int = 0,
) -> None:  # fmt: skip
    """Start the hub on `db` and time until `total` samples are delivered."""
    hub, url = start_hub(tmp, 'retention_raw = "0s"\n' + forward)
    try:
        wait_healthy(url, hub, timeout=120)
        begin, cpu0 = time.monotonic(), cpu_seconds(hub.pid)
        vm_cpu0 = cpu_seconds(vm.proc.pid)  # type: ignore[union-attr]
        while (done := delivered(db, "vm")) < total:
            if time.monotonic() - begin > 600:
                print(f"  gave up after 600 s: {done:,.0f} of {total:,} sent")
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - begin
        hub_cpu = cpu_seconds(hub.pid) - cpu0
        vm_cpu = cpu_seconds(vm.proc.pid) - vm_cpu0  # type: ignore[union-attr]
        done -= before
        rate = done / elapsed
        print(
            f"  {what}: {done:,.0f} samples in {elapsed:.1f} s = {rate:,.0f} samples/s"
            f" (target 100,000); hub CPU {hub_cpu:.1f} s ({100 * hub_cpu / elapsed:.0f} % of a"
            f" core, {1e6 * hub_cpu / max(1, done):.1f} us a sample, {us:.1f} of it reading and"
            f" encoding), VictoriaMetrics CPU {vm_cpu:.1f} s"
        )
    finally:
        hub.terminate()
        hub.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--fleet", type=int, default=10_000)
    parser.add_argument("--per-send", type=int, default=2000)
    args = parser.parse_args()

    cycle = [r for r in one_cycle_of_records() if r["kind"] == "metric"]
    print(f"ingest: {len(cycle)} points a batch, {args.hosts} hosts x {args.cycles} batches")
    for label, cls in (("without batches", NoBatches), ("with batches", SQLiteStore)):
        print(f"  {label:16} {ingest_cost(cls, args.hosts, args.cycles, cycle):6.2f} ms/batch")

    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-forward-"))
    try:
        started = time.monotonic()
        db = tmp / "hub.db"
        per_host = fill(db, args.fleet)
        total = args.fleet * per_host
        print(
            f"forwarding: {args.fleet:,} hosts x {per_host} samples = {total:,} samples stored"
            f" in {time.monotonic() - started:.1f} s"
        )
        shutil.copy(db, tmp / "work.db")
        us, squeeze, n = forwarder_work(tmp / "work.db", args.per_send)
        print(
            f"  the forwarder's own work (read, encode, compress; no sending): {us:.2f} us/sample"
            f" ({1e6 / us:,.0f} samples/s on one core), of which snappy {squeeze:.2f} us; {n:,}"
        )
        vm = VictoriaMetrics(tmp / "vm")
        try:
            forward = (
                f'[[hub.forward]]\nname = "vm"\nurl = "{vm.write_url}"\n'
                f"max_samples_per_send = {args.per_send}\n"
            )
            drain(
                tmp, db, vm, forward, total, us, "new series (each sample a series VM has not seen)"
            )
            # the next cycle of every host: the series exist, as in a running fleet
            stored = next_cycle(db, args.fleet, per_host)
            drain(tmp, db, vm, forward, total + stored, us, "steady state (known series)", total)
        finally:
            vm.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
