#!/usr/bin/env python3
"""Hub ingest under a simulated fleet: the sizing load generator (issue 15,
item 4; issue 3 before it).

Simulated agents, each with its own host name, token (hub.auth.host_token
of the hub's secret), stream and sequence numbers, push a realistic batch
every 10 s at a random phase over the real protocol (msgpack + zstd, POST
/v1/ingest): 60 host metrics (one collection cycle of this host, the
metric set docs/metrics.md lists, with CPU usage) and, in one batch in 20,
a log event. A refused batch is sent again at the next slot (the agent's
idempotent replay). The bodies are encoded before the clock starts, so
the generator's CPU during a run is its HTTP work only; it still shares
the machine's cores with the hub, and its own CPU is printed. Above 2,000
agents the agents are spread over several processes (multiprocessing,
one asyncio loop each, `--procs`).

Runs, each a fresh hub (or hubs) on loopback, `--seconds` long, the first
`--warmup` seconds not counted (the first interval creates every host's
series; the second absorbs what queued behind it):

- sqlite: one `vigil hub run` on SQLite, for each N of `--agents`
  (2,000, 5,000 and 10,000).
- postgres: two hubs on one PostgreSQL 15 (tests/pgserver.py starts it in a
  temporary directory), the agents split between them as a load balancer
  would; each hub's CPU and RSS, and PostgreSQL's CPU.
- forward: one hub on SQLite with one `[[hub.forward]]` into Debian's
  VictoriaMetrics (bench/tsdb.py), N = `--forward-agents` (5,000: a load
  the hub carries): the
  forwarder's samples/s into VictoriaMetrics while the fleet pushes, its
  lag at the end, and the time to catch up once the fleet stops.

Per run: batches/s offered (agents / 10 s) and accepted, samples/s,
p50/p99 ingest latency as the client sees it (from sending the request to
reading the answer, a wait for one of the generator's 256 connections
included: an agent's own wait), each hub's CPU (% of one core) and RSS,
the generator's CPU, refused batches (429/503, other statuses, network
errors). After the runs, where a batch's time goes in the hub's store
(in-process, no HTTP), and the batches/s that allows. Targets on a 2-core machine
(issue 15): 10,000 agents with p99 < 250 ms on one hub; the forwarder
keeps up with 100,000 samples/s (bench/hub_forward.py measures its drain
rate; here: that it keeps up with the fleet). `--profile` records the
hub under the largest SQLite run with py-spy and prints where its time
goes.

    .venv/bin/python -m bench.hub_ingest                    # everything
    .venv/bin/python -m bench.hub_ingest --quick            # a smoke run
    .venv/bin/python -m bench.hub_ingest --runs sqlite --agents 10000 --profile

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import math
import multiprocessing
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import cpu_seconds, percentile, start_hub, status_kib, wait_healthy
from hub.auth import host_token

INTERVAL = 10.0
METRICS = 60  # host metrics a batch (issue 15)
LOG_EVERY = 20  # one batch in LOG_EVERY carries a log event
SECRET = secrets.token_hex(32).encode()


def sim_cycle() -> list[dict[str, Any]]:
    """60 host metrics: this host's collection cycle (docs/metrics.md's
    names), with CPU usage, cut or padded to exactly 60."""
    cycle = [r for r in one_cycle_of_records() if r["kind"] == "metric"]
    extra = [
        {"kind": "metric", "name": "cpu_usage_percent", "labels": {"cpu": "all"}, "type": "gauge"},
        *(
            {"kind": "metric", "name": "cpu_mode_percent", "labels": {"cpu": "all", "mode": m},
             "type": "gauge"}
            for m in ("user", "system", "idle", "iowait", "steal")
        ),
    ]  # fmt: skip
    cycle = [dict(r, value=12.5) for r in extra] + cycle
    while len(cycle) > METRICS:  # a host with more devices: drop a device's repeat
        names = collections.Counter(r["name"] for r in cycle)
        cycle.pop(max(i for i, r in enumerate(cycle) if names[r["name"]] > 1))
    while len(cycle) < METRICS:  # a host with fewer devices than this one
        cycle.append(dict(cycle[-1], labels={**cycle[-1]["labels"], "pad": str(len(cycle))}))
    return cycle


def log_event(i: int, ts: float) -> dict[str, Any]:
    return {
        "kind": "event", "type": "log", "ts": ts, "severity": "high",
        "message": f"ERROR upstream timed out after {i % 997} ms on 10.0.{i % 250}.1",
        "fields": {"file": "/var/log/app.log", "rule": "errors"},
    }  # fmt: skip


@dataclass
class Share:
    """What one generator process does: agents [first, first + count)."""

    urls: list[str]
    first: int
    count: int
    seconds: float
    warmup: float
    connections: int
    seed: int
    secret: bytes = SECRET  # this process's: a spawned worker draws its own SECRET


@dataclass
class Outcome:
    latencies: bytes = b""  # array('d') of seconds, sends begun after the warm-up
    accepted: int = 0  # in the measured window
    samples: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # refusals, whole run


def _bodies(i: int, cycle: list[dict[str, Any]], cycles: int, base: float) -> list[bytes]:
    host = f"sim-{i:05d}"
    stream, seq, out = secrets.token_hex(16), 1, []
    for k in range(cycles):
        ts = base + k * INTERVAL
        records: list[dict[str, Any]] = [dict(r, ts=ts) for r in cycle]
        if (i + k) % LOG_EVERY == 0:
            records.append(log_event(i + k, ts))
        out.append(
            protocol.compress(
                protocol.encode_batch(host, stream, seq, records, "bench", ts, INTERVAL)
            )
        )
        seq += len(records)
    return out


async def _agent(
    i: int, url: str, bodies: list[bytes], session: aiohttp.ClientSession,
    start: float, share: Share, lat: array.array, out: Outcome,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    headers = {
        "Authorization": f"Bearer {host_token(f'sim-{i:05d}', share.secret)}",
        "Content-Encoding": "zstd",
        "Content-Type": "application/msgpack",
    }
    phase = random.uniform(0, INTERVAL)
    end, counted = start + share.seconds, start + share.warmup
    k = sent = 0
    while (at := start + phase + k * INTERVAL) < end and sent < len(bodies):
        k += 1
        await asyncio.sleep(max(0.0, at - loop.time()))
        begin = loop.time()
        try:
            async with session.post(url, data=bodies[sent], headers=headers) as resp:
                await resp.read()
                status = str(resp.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            status = type(e).__name__
        if status != "200":
            out.statuses[status] = out.statuses.get(status, 0) + 1
            continue  # the same batch again at the next slot
        sent += 1
        if begin >= counted:
            lat.append(loop.time() - begin)
            out.accepted += 1
            out.samples += METRICS


async def _generate(share: Share, ready: Any, go: Any) -> Outcome:
    random.seed(share.seed)
    cycle = sim_cycle()
    cycles = math.ceil(share.seconds / INTERVAL) + 1
    base = time.time()
    bodies = [
        _bodies(i, cycle, cycles, base) for i in range(share.first, share.first + share.count)
    ]
    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    out, lat = Outcome(), array.array("d")
    connector = aiohttp.TCPConnector(limit=share.connections)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        start = asyncio.get_running_loop().time()
        await asyncio.gather(
            *(
                _agent(i, share.urls[i % len(share.urls)], b, session, start, share, lat, out)
                for i, b in zip(range(share.first, share.first + share.count), bodies, strict=True)
            )
        )
    out.latencies = lat.tobytes()
    return out


def _worker(share: Share, ready: Any, go: Any, results: Any) -> None:
    results.put(asyncio.run(_generate(share, ready, go)))


@dataclass
class Run:
    """One measured run: what the clients saw, and each process's CPU."""

    agents: int
    window: float
    latencies: list[float]
    accepted: int
    samples: int
    statuses: dict[str, int]
    procs: int
    load_cpu: float  # seconds, all generator processes, in the window
    cpu: dict[str, float]  # process name -> seconds in the window
    rss: dict[str, int]  # hub name -> KiB at the end
    hwm: dict[str, int]
    loadavg: float


def fleet(
    n: int, urls: list[str], pids: dict[str, int], seconds: float, warmup: float, procs: int,
    during: Any = None,
) -> Run:  # fmt: skip
    """N simulated agents against `urls` (agent i sends to urls[i % len]),
    in `procs` processes; `pids` are measured over the window."""
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(procs)]
    go, results = ctx.Event(), ctx.Queue()
    per = math.ceil(n / procs)
    workers = []
    for p in range(procs):
        first = p * per
        share = Share(urls, first, min(per, n - first), seconds, warmup, 256 // procs, p)
        w = ctx.Process(target=_worker, args=(share, ready[p], go, results), daemon=True)
        w.start()
        workers.append(w)
    for e in ready:
        if not e.wait(600):
            raise SystemExit("the load generator did not get ready")
    go.set()
    time.sleep(warmup)
    load = {f"load{w.pid}": w.pid for w in workers if w.pid}
    before = {k: _cpu(p) for k, p in {**pids, **load}.items()}
    t0 = time.monotonic()
    if during is not None:
        during(seconds - warmup)
    time.sleep(max(0.0, seconds - warmup - (time.monotonic() - t0)))
    window = time.monotonic() - t0
    spent = {k: _cpu(p) - before[k] for k, p in {**pids, **load}.items()}
    rss = {k: status_kib(p) for k, p in pids.items() if k.startswith("hub")}
    hwm = {k: status_kib(p, "VmHWM") for k, p in pids.items() if k.startswith("hub")}
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
    lat = array.array("d")
    statuses: collections.Counter[str] = collections.Counter()
    for o in outcomes:
        lat.frombytes(o.latencies)
        statuses.update(o.statuses)
    return Run(
        agents=n, window=window, latencies=sorted(lat),
        accepted=sum(o.accepted for o in outcomes), samples=sum(o.samples for o in outcomes),
        statuses=dict(statuses), procs=procs,
        load_cpu=sum(v for k, v in spent.items() if k.startswith("load")),
        cpu={k: v for k, v in spent.items() if not k.startswith("load")},
        rss=rss, hwm=hwm, loadavg=os.getloadavg()[0],
    )  # fmt: skip


def _cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (PostgreSQL's backends,
    under runuser and the postmaster)."""
    total = 0.0
    with contextlib.suppress(OSError):
        total += cpu_seconds(pid)
    for child in _children(pid):
        total += _cpu(child)
    return total


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


HEADER = (
    f"{'run':<15} {'agents':>6} {'offered':>7} {'batches/s':>9} {'samples/s':>9}"
    f" {'p50 ms':>7} {'p99 ms':>7}"
    f" {'refused':>8} {'hub CPU %':>10} {'hub RSS MB':>11} {'gen CPU %':>12} {'load':>5}"
)


def report(name: str, r: Run, extra: str = "") -> None:
    hubs = sorted(r.rss)
    cpu = "+".join(f"{100 * r.cpu[h] / r.window:.0f}" for h in hubs)
    rss = "+".join(f"{r.rss[h] / 1024:.0f}" for h in hubs)
    refused = sum(r.statuses.values())
    print(
        f"{name:<15} {r.agents:6d} {r.agents / INTERVAL:7.0f} {r.accepted / r.window:9.1f}"
        f" {r.samples / r.window:9,.0f}"
        f" {percentile(r.latencies, 0.5) * 1000:7.1f} {percentile(r.latencies, 0.99) * 1000:7.1f}"
        f" {refused:8d} {cpu:>10} {rss:>11}"
        f" {100 * r.load_cpu / r.window:6.0f} ({r.procs}p) {r.loadavg:5.2f}{extra}",
        flush=True,
    )
    if r.statuses:
        print(f"{'':15} refused: {dict(sorted(r.statuses.items()))}")
    others = {k: v for k, v in r.cpu.items() if not k.startswith("hub")}
    for k, v in others.items():
        print(f"{'':15} {k} CPU {100 * v / r.window:.0f} % of a core")


def auto_procs(n: int) -> int:
    return 1 if n <= 2000 else 2


def run_sqlite(args: argparse.Namespace, n: int, profile: bool) -> Run:
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-ingest-"))
    try:
        hub, url = start_hub(tmp, f'secret_file = "{_secret(tmp)}"\n')
        try:
            wait_healthy(url, hub, timeout=60)
            during = _profiler(hub.pid, tmp) if profile else None
            r = fleet(n, [url + "/v1/ingest"], {"hub": hub.pid}, args.seconds, args.warmup,
                      args.procs or auto_procs(n), during)  # fmt: skip
            report("sqlite", r)
            if profile:
                _flame_summary(tmp / "profile.txt")
            return r
        finally:
            hub.terminate()
            hub.wait(60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _secret(tmp: Path) -> Path:
    (tmp / "secret").write_bytes(SECRET + b"\n")
    os.chmod(tmp / "secret", 0o600)
    return tmp / "secret"


def run_postgres(args: argparse.Namespace, sizes: list[int]) -> None:
    try:
        from tests.pgserver import PostgresServer, missing
    except ImportError as e:  # pytest absent: not a dev install
        print(f"postgres: skipped ({e})")
        return
    if why := missing():
        print(f"postgres: skipped ({why})")
        return
    server = PostgresServer()
    server.start()
    try:
        for n in sizes:
            dsn = server.database()
            tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-ingest-pg-"))
            hubs = []
            try:
                secret = _secret(tmp)
                for name in ("a", "b"):
                    (tmp / name).mkdir()
                    hubs.append(start_hub(
                        tmp / name,
                        f'secret_file = "{secret}"\n[store]\nbackend = "postgres"\ndsn = "{dsn}"\n',
                    ))  # fmt: skip
                for hub, url in hubs:
                    wait_healthy(url, hub, timeout=60)
                assert server.proc is not None
                pids = {"hub-a": hubs[0][0].pid, "hub-b": hubs[1][0].pid,
                        "postgres": server.proc.pid}  # fmt: skip
                r = fleet(n, [u + "/v1/ingest" for _, u in hubs], pids, args.seconds,
                          args.warmup, args.procs or auto_procs(n))  # fmt: skip
                report("postgres x2", r)
            finally:
                for hub, _ in hubs:
                    hub.terminate()
                    hub.wait(60)
                shutil.rmtree(tmp, ignore_errors=True)
        from hub.store.postgres import PostgresStore

        ceiling(PostgresStore(server.database()), "PostgreSQL on loopback")
    finally:
        server.stop()


def _stored_and_sent(db: Path, forward: str) -> tuple[int, int]:
    """Records the hub stored, and those the forward has delivered
    (its cursors, as bench/hub_forward.py reads them)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as c:
        (stored,) = c.execute("SELECT coalesce(sum(hi - lo + 1), 0) FROM batches").fetchone()
        (sent,) = c.execute(
            "SELECT coalesce(sum(b.hi - b.lo + 1), 0) FROM forward_cursors c JOIN batches b"
            " ON b.host = c.host AND b.stream = c.stream AND b.seq <= c.seq"
            " WHERE c.forward = ?",
            (forward,),
        ).fetchone()
    return int(stored), int(sent)


def run_forward(args: argparse.Namespace, n: int) -> None:
    from bench.tsdb import VICTORIA, VictoriaMetrics

    if not os.path.exists(VICTORIA):
        print(f"forward: skipped ({VICTORIA} missing: apt-get install victoria-metrics)")
        return
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-ingest-fw-"))
    vm = VictoriaMetrics(tmp / "vm")
    try:
        forward = f'[[hub.forward]]\nname = "vm"\nurl = "{vm.write_url}"\n'
        hub, url = start_hub(tmp, f'secret_file = "{_secret(tmp)}"\n{forward}')
        try:
            wait_healthy(url, hub, timeout=60)
            db = tmp / "hub.db"
            marks: list[tuple[float, int, int]] = []

            def during(seconds: float) -> None:
                marks.append((time.monotonic(), *_stored_and_sent(db, "vm")))
                time.sleep(seconds)
                marks.append((time.monotonic(), *_stored_and_sent(db, "vm")))

            assert vm.proc is not None
            r = fleet(n, [url + "/v1/ingest"], {"hub": hub.pid, "victoria": vm.proc.pid},
                      args.seconds, args.warmup, args.procs or auto_procs(n), during)  # fmt: skip
            (t0, _, sent0), (t1, stored1, sent1) = marks
            rate = (sent1 - sent0) / (t1 - t0)
            report(
                "sqlite+forward", r,
                f"\n{'':15} forwarded {rate:,.0f} samples/s into VictoriaMetrics while the fleet"
                f" pushed {r.samples / r.window:,.0f}; {stored1 - sent1:,} records behind at the"
                " end of the window",
            )  # fmt: skip
            begin = time.monotonic()
            stored, sent = _stored_and_sent(db, "vm")
            while sent < stored and time.monotonic() - begin < 300:
                time.sleep(0.2)
                stored, sent = _stored_and_sent(db, "vm")
            print(
                f"{'':15} caught up {time.monotonic() - begin:.1f} s after the fleet stopped"
                f" ({sent:,} of {stored:,} records delivered)"
            )
        finally:
            hub.terminate()
            hub.wait(60)
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _profiler(pid: int, tmp: Path) -> Any:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    def during(seconds: float) -> None:
        if not os.path.exists(spy):
            print("profile: py-spy missing (.venv/bin/pip install py-spy)")
            return
        subprocess.run(
            [spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds) - 1)),
             "--rate", "50", "--format", "raw", "--output", str(tmp / "profile.txt"),
             "--nonblocking"],
            capture_output=True, timeout=seconds + 60,
        )  # fmt: skip

    return during


def _flame_summary(path: Path, top: int = 18) -> None:
    """py-spy's raw (collapsed) stacks, summed: the functions the hub's
    threads spend most samples in, inclusive, and the leaves (self)."""
    if not path.exists():
        print("profile: py-spy recorded nothing (ptrace not permitted?)")
        return
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[frames[0]] += n
        leaf[_short(frames[-1])] += n
        for f in {_short(f) for f in frames[1:]}:
            inclusive[f] += n
    print(f"profile of the hub ({total} samples of busy threads at 50 Hz), by thread:")
    for name, n in threads.most_common(8):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("  inclusive:")
    for name, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("  self (leaf frames):")
    for name, n in leaf.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {name}")


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    return f"{name} ({'/'.join(parts[-2:])})" if parts else name


GROUP = 64  # batches a group commit in ceiling(): what queues behind a commit under load


def ceiling(store: Any = None, what: str = "SQLite", hosts: int = 400) -> None:
    """Where a batch's time goes, in this process without HTTP: decoding
    and validating it (the hub's event loop), and the store's `ingest` on
    series it already has (the one store thread, a durable commit each):
    the batches/s one store thread could do."""
    from hub.store.sqlite import SQLiteStore

    cycle = sim_cycle()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-ingest-") as tmp:
        if store is None:
            store = SQLiteStore(Path(tmp) / "hub.db")
        now = time.time()
        bodies = [
            [
                protocol.compress(
                    protocol.encode_batch(
                        f"h{h}",
                        "a" * 32,
                        1 + METRICS * k,
                        [dict(r, ts=now + 10 * k) for r in cycle],
                        "bench",
                        now,
                    )
                )
                for h in range(hosts)
            ]
            for k in range(3)
        ]
        for body in bodies[0]:  # the series exist, as in a running fleet
            store.ingest(protocol.decode_batch(protocol.decompress(body, "zstd")), now)
        parts: dict[str, float] = {}
        for name in ("_new_series", "_append", "_roll", "_seen"):
            setattr(store, name, _timed(getattr(store, name), name, parts))
        t0 = time.perf_counter()
        batches = [protocol.decode_batch(protocol.decompress(b, "zstd")) for b in bodies[1]]
        t1 = time.perf_counter()
        for b in batches:
            store.ingest(b, now)
        t2 = time.perf_counter()
        parts = dict(parts)  # the single commits' split; the groups' below are apart
        # group commit, as the hub does under load: prepared in the decode
        # threads, then GROUP batches a transaction in the store thread
        grouped = [protocol.decode_batch(protocol.decompress(b, "zstd")) for b in bodies[2]]
        t3 = time.perf_counter()
        prepared = [store.prepare(b, now) for b in grouped]
        t4 = time.perf_counter()
        for i in range(0, hosts, GROUP):
            store.ingest_many(prepared[i : i + GROUP])
        t5 = time.perf_counter()
        store.close()
    decode, ingest = 1000 * (t1 - t0) / hosts, 1000 * (t2 - t1) / hosts
    prepare, many = 1000 * (t4 - t3) / hosts, 1000 * (t5 - t4) / hosts
    print(
        f"where a batch's time goes ({what}, in-process, no HTTP, {METRICS} metrics): decompress"
        f" + decode + validate {decode:.2f} ms, store.ingest {ingest:.2f} ms (one thread, one"
        f" durable commit a batch): at most {1000 / ingest:,.0f} batches/s ="
        f" {INTERVAL * 1000 / ingest:,.0f} agents at {INTERVAL:.0f} s"
        " through one hub's store thread, if it had a core to itself"
    )
    rest = ingest - sum(1000 * v / hosts for v in parts.values())
    print(
        "  store.ingest: "
        + ", ".join(f"{k} {1000 * v / hosts:.2f} ms" for k, v in parts.items())
        + f", the rest (transaction and commit, folding rows, limits) {rest:.2f} ms"
    )
    print(
        f"group commit ({what}, in-process, groups of {GROUP}): prepare {prepare:.2f} ms a batch"
        f" (the decode threads), ingest_many {many:.2f} ms a batch (the store thread): at most"
        f" {1000 / many:,.0f} batches/s = {INTERVAL * 1000 / many:,.0f} agents at {INTERVAL:.0f} s"
        " through the store thread; decode + prepare + HTTP share the same interpreter lock"
    )


def _timed(method: Any, name: str, parts: dict[str, float]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            parts[name] = parts.get(name, 0.0) + time.perf_counter() - start

    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="2000,5000,10000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--procs", type=int, default=0, help="generator processes (0: auto)")
    parser.add_argument("--forward-agents", type=int, default=5000, help="agents, forward run")
    parser.add_argument("--runs", default="sqlite,postgres,forward")
    parser.add_argument("--profile", action="store_true", help="py-spy the largest sqlite run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 agents, 15 s")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.seconds, args.warmup = "300", 15.0, 3.0
    sizes = [int(x) for x in args.agents.split(",")]
    runs = set(args.runs.split(","))
    print(
        f"each batch: {METRICS} metrics (+ a log event in one batch in {LOG_EVERY}), every"
        f" {INTERVAL:.0f} s per agent; {args.seconds:.0f} s a run, the first {args.warmup:.0f} s"
        f" not counted; {os.cpu_count()} cores shared by the hub(s), the generator and"
        " (postgres, forward) the database; load = 1-min load average at the end"
    )
    print(HEADER)
    results = {}
    if "sqlite" in runs:
        for n in sizes:
            results[n] = run_sqlite(args, n, args.profile and n == max(sizes))
    if "postgres" in runs:
        run_postgres(args, sizes)
    if "forward" in runs:
        run_forward(args, min(args.forward_agents, max(sizes)))
    if 10_000 in results:
        p99 = percentile(results[10_000].latencies, 0.99) * 1000
        print(f"target, 10,000 agents on one hub: p99 {p99:.0f} ms (< 250 ms:"
              f" {'met' if p99 < 250 else 'MISSED'})")  # fmt: skip
    ceiling()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
