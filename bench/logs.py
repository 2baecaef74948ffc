#!/usr/bin/env python3
"""Log matching throughput: vigil against `grep -cE`, as users run it.

Generates once (seeded, cached in the temp directory) a log of realistic
lines, nginx combined access lines mixed with application lines (INFO, DEBUG,
WARN, request ids, durations), about 0.1 % of them error lines that three
patterns find. `grep -cE` with the three patterns (C locale) is the yardstick;
every figure is the median of 5 runs (`--runs`), from the page cache, with
the ratio to grep (>1: faster than grep).

1. The matcher alone (collectors/logs/matcher.py), with Hyperscan and with
   `re`, reading the file as the tailer does (4 MiB reads cut at the last
   newline); an error if it counts other lines than grep.
2. Rules and detectors in-process (rules.py's TableProcessor on the same
   chunks, no file reading or commits), in both configurations below, and
   where that time goes.
3. End to end: a real `vigil run` tailing the file from its beginning with
   the three patterns as rules (read, match, count, commit the events to its
   disk buffer), in two configurations:
   - defaults off: `default_rules = false`, `detectors = []`;
   - defaults on: what a user gets with only `paths` and `rules` set (the 18
     default rules and the auth, volume and new_errors detectors).
   Printed: wall time from process start until the whole file is committed
   (it includes ~0.6 s of start-up), and the agent's speed once reading (from
   its first read of the log until all is committed), in MB per CPU second of
   the agent process (all threads), which is what its reading costs and what
   it can sustain, and in MB per wall-clock second.
4. JSON logs: a generated JSON log where about 0.1 % of the lines match,
   through a `format = "json"` table with defaults on, every line parsed
   (as before the prefilter) and with the literal prefilter.
5. The agent's CPU while 200 files it follows sit idle.

    .venv/bin/python -m bench.logs [--mb 400]        (or VIGIL_BENCH_LOG_MB=40)

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import psutil

from bench.common import cpu_seconds, free_port
from collectors.logs.config import LogsConfig, RuleConfig
from collectors.logs.detectors.base import build_all
from collectors.logs.files import Chunk
from collectors.logs.matcher import available_engines, build_matcher
from collectors.logs.rules import RateLimiter, TableProcessor

# Python `re` and POSIX ERE read these alike, so grep and vigil count the same lines.
PATTERNS = ("ERROR|FATAL", "database connection failed", "status=5[0-9][0-9] ")
CHUNK = 4 << 20  # what the tailer reads at once
RUNS = 5
SEED = 20250312
FORMAT = 1  # bump when the generator changes: a new cache file


# -- the log ---------------------------------------------------------------------------

METHODS = ["GET"] * 8 + ["POST"] * 3 + ["PUT", "DELETE", "HEAD"]
PATHS = [
    "/",
    "/index.html",
    "/api/v1/orders",
    "/api/v1/orders/{n}",
    "/api/v1/users/{n}/profile",
    "/api/v1/search?q=shoes&page={n}",
    "/static/js/app.{n}.js",
    "/static/css/site.css",
    "/images/products/{n}.jpg",
    "/healthz",
    "/metrics",
    "/login",
    "/cart/items/{n}",
]
STATUSES = [200] * 40 + [201, 204, 301, 302, 304, 304, 400, 401, 403, 404, 404, 429]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "curl/8.5.0",
    "kube-probe/1.29",
    "Prometheus/2.50.1",
    "python-requests/2.31.0",
]
REFERERS = ["-", "-", "https://shop.example.com/", "https://www.google.com/"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
LEVELS = ["INFO"] * 6 + ["DEBUG"] * 3 + ["WARN"]
COMPONENTS = ["http", "orders", "payments", "db-pool", "cache", "scheduler", "auth", "mailer"]
MESSAGES = [
    "request completed method={m} path={p} status={s} duration_ms={d}",
    "order created id={n} items={k} total_cents={n2}",
    "cache miss key=product:{n} ttl_s=300",
    "cache hit key=session:{n}",
    "payment authorised provider=stripe amount_cents={n2} duration_ms={d}",
    "connection acquired from pool active={k} idle={k2} wait_ms={d}",
    "user login ok user_id={n} mfa=true",
    "job finished name=reindex rows={n2} duration_ms={d}",
    "slow query took {d} ms: SELECT * FROM orders WHERE customer_id = $1",
    "retrying request attempt={k} backoff_ms={d}",
    "config reloaded from /etc/shop/app.yaml",
]
ERRORS = [  # each one found by at least one pattern
    "{ts} ERROR [db-pool] req={rid} database connection failed: connection refused"
    " (host=db-{k}.internal:5432) after {d} ms",
    "{ts} ERROR [payments] req={rid} provider call failed status=502 duration_ms={d}",
    "{ts} WARN  [http] req={rid} upstream responded status=503 path=/api/v1/orders",
    "{ts} FATAL [main] unrecoverable: out of memory allocating {n2} bytes, exiting",
    "{ts} ERROR [orders] req={rid} order {n} rejected: inventory service unavailable",
]
ERROR_SHARE = 0.001


def generate(path: Path, megabytes: float) -> None:
    """A deterministic log of about `megabytes`, written whole or not at all."""
    rnd = random.Random(SEED)
    target = int(megabytes * 1e6)
    ips = [".".join(str(rnd.randint(1, 254)) for _ in range(4)) for _ in range(500)]
    t = 1_710_000_000.0
    written = 0
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", encoding="ascii") as out:
        while written < target:
            batch: list[str] = []
            for _ in range(10_000):
                t += rnd.expovariate(1 / 0.004)
                batch.append(_line(rnd, t, ips))
            text = "".join(batch)
            out.write(text)
            written += len(text)
    tmp.replace(path)


def _line(rnd: random.Random, t: float, ips: list[str]) -> str:
    n, n2 = rnd.randint(1, 99_999), rnd.randint(1000, 9_999_999)
    k, k2 = rnd.randint(1, 9), rnd.randint(0, 9)
    d = int(rnd.lognormvariate(3, 1.2))
    rid = f"{rnd.getrandbits(64):016x}"
    tm = time.gmtime(t)
    iso = f"{time.strftime('%Y-%m-%dT%H:%M:%S', tm)}.{int(t * 1000) % 1000:03d}Z"
    if rnd.random() < ERROR_SHARE:
        return rnd.choice(ERRORS).format(ts=iso, rid=rid, n=n, n2=n2, k=k, d=d * 100) + "\n"
    if rnd.random() < 0.5:  # nginx / Apache combined
        clf = f"{tm.tm_mday:02d}/{MONTHS[tm.tm_mon - 1]}/{time.strftime('%Y:%H:%M:%S', tm)} +0000"
        status = rnd.choice(STATUSES)
        return (
            f'{rnd.choice(ips)} - - [{clf}] "{rnd.choice(METHODS)} {rnd.choice(PATHS).format(n=n)}'
            f' HTTP/1.1" {status} {rnd.randint(0, 60_000) if status != 304 else 0}'
            f' "{rnd.choice(REFERERS)}" "{rnd.choice(AGENTS)}" rt={d / 1000:.3f}\n'
        )
    message = rnd.choice(MESSAGES).format(
        m=rnd.choice(METHODS),
        p=rnd.choice(PATHS).format(n=n),
        s=rnd.choice(STATUSES),
        d=d,
        n=n,
        n2=n2,
        k=k,
        k2=k2,
    )
    level = rnd.choice(LEVELS)
    return f"{iso} {level:5} [{rnd.choice(COMPONENTS)}] req={rid} {message}\n"


def the_log(megabytes: float, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"logs-{megabytes:g}mb-seed{SEED}-v{FORMAT}.log"
    if not path.exists():
        print(f"generating {path} (once; cached) ...", flush=True)
        start = time.perf_counter()
        generate(path, megabytes)
        print(f"  took {time.perf_counter() - start:.1f} s", flush=True)
    return path


def warm_page_cache(path: Path) -> int:
    """Read the whole file once, so every timed run reads it from memory."""
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            lines += block.count(b"\n")
    return lines


# -- matching: grep against vigil's matcher ---------------------------------------------


def chunks(path: Path) -> Iterator[bytes]:
    """The file in 4 MiB reads cut at the last newline, as the tailer reads."""
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while data := os.pread(fd, CHUNK, offset):
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                break  # a final line without its newline: not a line yet
            yield data if cut == len(data) else data[:cut]
            offset += cut
    finally:
        os.close(fd)


def median_of(runs: int, measure: Callable[[], int]) -> tuple[float, int]:
    """The median wall-clock time of `runs` and what the last run counted."""
    times, count = [], -1
    for _ in range(runs):
        start = time.perf_counter()
        count = measure()
        times.append(time.perf_counter() - start)
    return statistics.median(times), count


def grep_count(path: Path, env: dict[str, str]) -> int:
    done = subprocess.run(
        ["grep", "-cE", "|".join(PATTERNS), str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode > 1:  # 1: no line matched
        raise RuntimeError(f"grep failed: {done.stderr.strip()}")
    return int(done.stdout)


def matcher_count(path: Path, engine: str) -> int:
    matcher = build_matcher(PATTERNS, engine)
    return sum(len(matcher.scan(chunk)) for chunk in chunks(path))


def bench_matcher(path: Path, runs: int = RUNS) -> tuple[bool, float]:
    """grep -cE and the matcher (each engine) over `path`: (counts agree, grep's MB/s)."""
    size = path.stat().st_size
    lines = warm_page_cache(path)
    mb = size / 1e6
    print(f"log: {path}: {mb:,.1f} MB, {lines:,} lines")
    print("page cache: the file was read once before timing; every run reads it from memory")
    print(f"patterns: {'  '.join(repr(p) for p in PATTERNS)}")
    print(f"matcher input: {CHUNK >> 20} MiB reads cut at the last newline; median of {runs} runs")

    contenders: list[tuple[str, Callable[[], int]]] = []
    c_env = {**os.environ, "LC_ALL": "C"}
    contenders.append(("grep -cE, LC_ALL=C", lambda: grep_count(path, c_env)))
    here = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG")
    if here and here not in ("C", "POSIX"):  # the locale grep would get here
        contenders.append((f"grep -cE, {here}", lambda: grep_count(path, dict(os.environ))))
    for engine in available_engines():
        contenders.append(
            (f"vigil matcher, {engine}", functools.partial(matcher_count, path, engine))
        )

    print(f"{'':24} {'median s':>8} {'MB/s':>8} {'lines':>9} {'vs grep (C)':>12}")
    grep_s, grep_n, ok = 0.0, 0, True
    for name, measure in contenders:
        took, count = median_of(runs, measure)
        if not grep_s:
            grep_s, grep_n = took, count
        ratio = grep_s / took
        print(f"{name:24} {took:8.3f} {mb / took:8,.0f} {count:9,} {ratio:11.2f}x")
        if count != grep_n:
            print(f"ERROR: {name} counted {count:,} lines, grep {grep_n:,}", file=sys.stderr)
            ok = False
    print(
        f"matched lines: {grep_n:,} ({100 * grep_n / max(lines, 1):.2f} %);"
        " vs grep: throughput relative to grep -cE in the C locale (>1: faster)"
    )
    return ok, mb / grep_s


# -- end to end: a real agent tails the file ----------------------------------------------


def _agent(tmp: Path, logs_toml: str, api: int, hub_port: int) -> subprocess.Popen[bytes]:
    """A real `vigil run`, pushing to a port where no hub listens: everything
    it finds goes to its disk buffer and stays there."""
    config = tmp / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp / "state"}"\ninterval = "1s"\n'
        "[host]\nenabled = []\n"
        f'[hub]\nurl = "http://127.0.0.1:{hub_port}"\ntoken = "bench.0"\nmax_backoff = "60s"\n'
        f'[api]\nlisten = "127.0.0.1:{api}"\n{logs_toml}'
    )
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _status(api: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/status", timeout=5) as resp:
            return cast("dict[str, Any]", json.load(resp))
    except OSError:
        return None


USER_RULES = tuple(RuleConfig(name=f"r{i}", pattern=p) for i, p in enumerate(PATTERNS))
CONFIGS: dict[
    str, dict[str, Any]
] = {  # name -> what the [[logs]] table sets besides paths and rules
    "defaults off": {"default_rules": False, "detectors": ()},
    "defaults on": {},
}


def processor(path: Path, **options: Any) -> TableProcessor:
    config = LogsConfig(paths=(str(path),), rules=USER_RULES, **options)
    detectors = build_all()
    return TableProcessor(config, detectors, {}, RateLimiter(config.events_per_minute))


def run_processor(proc: TableProcessor, label: str, data: list[bytes]) -> int:
    events: list[Any] = []
    now = time.time()
    for chunk in data:
        proc.process(Chunk(label, chunk, chunk.count(b"\n")), now, events.append)
    return sum(proc.matches.values())


def bench_in_process(path: Path, grep_mbps: float, runs: int = RUNS) -> None:
    """rules.py on the chunks in memory: no file reading, no commit."""
    data = list(chunks(path))
    mb = sum(map(len, data)) / 1e6
    print(f"rules and detectors in-process (TableProcessor.process), median of {runs} runs:")
    for name, options in CONFIGS.items():

        def once(options: dict[str, Any] = options) -> int:
            return run_processor(processor(path, **options), str(path), data)

        took, matched = median_of(runs, once)
        print(
            f"  {name:14} {mb / took:8,.0f} MB/s  {grep_mbps and mb / took / grep_mbps:5.2f}x grep"
            f"  ({matched:,} rule matches)"
        )
    proc = processor(path)
    read_s, _ = median_of(runs, lambda: sum(len(c) for c in chunks(path)))
    count_s, _ = median_of(runs, lambda: sum(c.count(b"\n") for c in data))
    scan_s, _ = median_of(runs, lambda: sum(len(proc.matcher.scan(c)) for c in data))
    whole_s, _ = median_of(runs, lambda: run_processor(processor(path), str(path), data))
    print(
        f"  where the time goes, defaults on: reading as the tailer does (pread, the copy"
        f" up to the last newline) {read_s:.3f} s, counting lines (bytes.count) {count_s:.3f} s,"
        f" the scan ({proc.engine}, {len(proc.matcher.patterns)} patterns) {scan_s:.3f} s,"
        f" matched lines (rules, events, detectors) {max(whole_s - count_s - scan_s, 0):.3f} s"
        f" (grep -cE: {mb / grep_mbps:.3f} s)"
    )


def _rchar(pid: int) -> int:
    """Bytes the process has read so far (/proc/PID/io)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def tail_once(path: Path, logs: str) -> tuple[float, float, float]:
    """A real agent reading `path` from its beginning: (seconds from process
    start until everything is committed, CPU seconds of the agent from its
    first read of the log (a jump of a MiB in /proc/PID/io's rchar) to then,
    and wall seconds over the same span)."""
    size = path.stat().st_size
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        api = free_port()
        started = time.monotonic()
        agent = _agent(Path(tmp), logs, api, free_port())
        try:
            read, cpu_before = 0, 0.0
            while True:  # start-up: until the first read of the log
                now_read, now_cpu = _rchar(agent.pid), cpu_seconds(agent.pid)
                if read and now_read - read >= 1 << 20:
                    reading = time.monotonic()
                    break
                read, cpu_before = now_read, now_cpu
                if agent.poll() is not None:
                    raise SystemExit("the agent exited")
                time.sleep(0.002)
            while True:
                files = ((_status(api) or {}).get("logs") or {}).get("files") or []
                if files and files[0]["offset"] >= size:
                    break
                if agent.poll() is not None:
                    raise SystemExit("the agent exited")
                time.sleep(0.02)
            done = time.monotonic()
            cpu = cpu_seconds(agent.pid)
        finally:
            agent.terminate()
            agent.wait(30)
    return done - started, cpu - cpu_before, done - reading


def bench_tailing(path: Path, grep_mbps: float, runs: int = RUNS) -> None:
    """Read, match, count and buffer the events, as the agent does, in both
    configurations: a real agent from its start until the whole file is committed."""
    mb = path.stat().st_size / 1e6
    rules = "".join(
        f'  [[logs.rules]]\n  name = "r{i}"\n  pattern = {json.dumps(p)}\n'
        for i, p in enumerate(PATTERNS)
    )
    print(f"end to end: a real agent tails the file, median of {runs} runs")
    print(
        f"{'':14} {'wall, from start':>20}   {'per CPU second, reading':>26}"
        f"   {'wall, reading':>19}"
        f"   (grep -cE: {grep_mbps:,.0f} MB/s)"
    )
    for name, options in CONFIGS.items():
        table = "".join(
            f"{k} = {json.dumps(list(v)) if isinstance(v, tuple) else str(v).lower()}\n"
            for k, v in options.items()
        )
        logs = f'[[logs]]\npaths = ["{path}"]\nstart_at = "beginning"\n{table}{rules}'
        results = [tail_once(path, logs) for _ in range(runs)]
        wall = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        reading = statistics.median(r[2] for r in results)
        print(
            f"{name:14} {mb / wall:8.1f} MB/s {mb / wall / grep_mbps:5.2f}x"
            f"   {mb / cpu:10,.0f} MB/s {mb / cpu / grep_mbps:5.2f}x  ({cpu:.2f} s CPU)"
            f"   {mb / reading:8,.0f} MB/s {mb / reading / grep_mbps:5.2f}x"
        )
    print(
        "  wall from start: includes start-up; reading: from the agent's first read of the"
        " log to the last commit, per CPU second (all threads) and per wall second;"
        " target >= 0.5x"
    )


JSON_RULES = (
    RuleConfig(name="coded", match={"code": "E[0-9]+"}, severity="high"),
    RuleConfig(name="db", pattern="database connection failed", severity="critical"),
)


def json_log(megabytes: float, directory: Path) -> Path:
    """A JSON-lines log made from the text log's lines: most match nothing."""
    path = directory / f"logs-{megabytes:g}mb-seed{SEED}-v{FORMAT}.jsonl"
    if path.exists():
        return path
    rnd = random.Random(SEED)
    source = the_log(megabytes, directory)
    tmp = path.with_suffix(".partial")
    written, target = 0, int(megabytes * 1e6)
    with open(source, encoding="ascii") as lines, open(tmp, "w", encoding="utf-8") as out:
        for line in lines:
            if written >= target:
                break
            parts = line.split(" ", 2)
            level = parts[1] if len(parts) == 3 and parts[1].isupper() else "INFO"
            record: dict[str, Any] = {
                "ts": parts[0],
                "level": level.lower(),
                "logger": rnd.choice(COMPONENTS),
                "message": line.rstrip("\n"),
                "duration_ms": rnd.randint(0, 5000),
            }
            if level == "ERROR" and rnd.random() < 0.5:
                record["code"] = f"E{rnd.randint(100, 999)}"
            text = json.dumps(record) + "\n"
            out.write(text)
            written += len(text)
    tmp.replace(path)
    return path


def bench_json(megabytes: float, directory: Path, runs: int = RUNS) -> None:
    """A JSON table, defaults on: every line parsed, then the prefilter."""
    path = json_log(megabytes, directory)
    warm_page_cache(path)
    data = list(chunks(path))
    mb = sum(map(len, data)) / 1e6

    def measure(prefilter: bool) -> tuple[float, Any]:
        def once() -> int:
            proc = TableProcessor(
                LogsConfig(paths=(str(path),), format="json", rules=JSON_RULES),
                build_all(),
                {},
                RateLimiter(20),
            )
            proc.json_prefilter = prefilter
            return run_processor(proc, str(path), data)

        return median_of(runs, once)

    full_s, full_n = measure(False)
    fast_s, fast_n = measure(True)
    print(f"JSON log: {path}: {mb:,.1f} MB, median of {runs} runs, defaults on")
    print(f"  every line parsed     {mb / full_s:8,.1f} MB/s  ({full_n:,} rule matches)")
    print(
        f"  literal prefilter     {mb / fast_s:8,.1f} MB/s  ({fast_n:,} rule matches)"
        f"  {full_s / fast_s:.1f}x faster"
    )
    if full_n != fast_n:
        print(f"ERROR: the prefilter counted {fast_n:,} matches, the full parse {full_n:,}")


def bench_idle(files: int = 200, seconds: float = 30.0) -> None:
    """An agent watching `files` log files that nobody writes: its CPU."""
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        logdir = Path(tmp) / "logs"
        logdir.mkdir()
        for i in range(files):
            (logdir / f"app{i:03d}.log").write_text(f"line one of file {i}\n")
        logs = f'[[logs]]\npaths = ["{logdir}/*.log"]\n'
        api = free_port()
        agent = _agent(Path(tmp), logs, api, free_port())
        try:
            while not ((_status(api) or {}).get("logs") or {}).get("files"):
                time.sleep(0.1)
            time.sleep(2.0)  # start-up done
            cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(seconds)
            cpu = cpu_seconds(agent.pid) - cpu0
            wall = time.monotonic() - t0
            watched = len(((_status(api) or {}).get("logs") or {}).get("files") or [])
            rss = psutil.Process(agent.pid).memory_info().rss
        finally:
            agent.terminate()
            agent.wait(30)
    print(
        f"idle on {watched} watched files: {100 * cpu / wall:.2f} % of one core "
        f"({1000 * cpu / wall:.1f} ms CPU per second), RSS {rss / 2**20:.1f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "--mb",
        type=float,
        default=float(os.environ.get("VIGIL_BENCH_LOG_MB", "400")),
        help="size of the generated log in MB (default 400, or $VIGIL_BENCH_LOG_MB)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "vigil-bench",
        help="where the generated log is kept between runs",
    )
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs each, median kept")
    parser.add_argument("--json-mb", type=float, default=100.0, help="size of the JSON log")
    parser.add_argument("--idle-files", type=int, default=200, help="files for the idle figure")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle measurement")
    args = parser.parse_args(argv)
    path = the_log(args.mb, args.cache)
    ok, grep_mbps = bench_matcher(path, args.runs)
    print()
    bench_in_process(path, grep_mbps, args.runs)
    print()
    bench_tailing(path, grep_mbps, args.runs)
    print()
    bench_json(args.json_mb, args.cache, args.runs)
    print()
    bench_idle(args.idle_files, args.idle_seconds)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
