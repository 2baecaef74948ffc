#!/usr/bin/env python3
"""Log matching throughput: vigil's multi-pattern matcher against `grep -cE`.

Then the whole agent: a real `vigil run` tailing the same file from its
beginning with the three patterns as rules (read, match, count, commit the
events to its disk buffer), timed until the whole file is committed; and
the agent's CPU while 200 files it follows sit idle.

Generates once (seeded, cached in the temp directory) a log of realistic
lines, nginx combined access lines mixed with application lines (INFO, DEBUG,
WARN, request ids, durations), about 0.1 % of them error lines that three
patterns find. Then counts the matching lines with `grep -cE` and with
collectors/logs/matcher.py reading the file as the tailer does (4 MiB reads
cut at the last newline), with Hyperscan and with `re`; best of 3 wall-clock
runs each, from the page cache. Prints MB/s, the ratio matcher/grep, and an
error if the counts differ.

    .venv/bin/python -m bench.logs [--mb 400]        (or VIGIL_BENCH_LOG_MB=40)

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
from collectors.logs.matcher import available_engines, build_matcher

# Python `re` and POSIX ERE read these alike, so grep and vigil count the same lines.
PATTERNS = ("ERROR|FATAL", "database connection failed", "status=5[0-9][0-9] ")
CHUNK = 4 << 20  # what the tailer reads at once
RUNS = 3
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


def best_of(runs: int, measure: Callable[[], int]) -> tuple[float, int]:
    """The shortest wall-clock time of `runs` and what the last run counted."""
    best, count = float("inf"), -1
    for _ in range(runs):
        start = time.perf_counter()
        count = measure()
        best = min(best, time.perf_counter() - start)
    return best, count


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
    print(f"matcher input: {CHUNK >> 20} MiB reads cut at the last newline; best of {runs} runs")

    contenders: list[tuple[str, Callable[[], int]]] = []
    c_env = {**os.environ, "LC_ALL": "C"}
    contenders.append(("grep -cE, LC_ALL=C", lambda: grep_count(path, c_env)))
    here = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG")
    if here and here not in ("C", "POSIX"):  # the locale grep would get here
        contenders.append((f"grep -cE, {here}", lambda: grep_count(path, dict(os.environ))))
    for engine in available_engines():
        contenders.append((f"vigil matcher, {engine}", lambda e=engine: matcher_count(path, e)))

    print(f"{'':24} {'best s':>8} {'MB/s':>8} {'lines':>9} {'vs grep (C)':>12}")
    grep_s, grep_n, ok = 0.0, 0, True
    for name, measure in contenders:
        took, count = best_of(runs, measure)
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


def bench_tailing(path: Path, grep_mbps: float) -> None:
    """Read, match, count and buffer the events, as the agent does: a real
    agent from its start to the moment the whole file is committed."""
    size = path.stat().st_size
    rules = "".join(
        f'  [[logs.rules]]\n  name = "r{i}"\n  pattern = {json.dumps(p)}\n'
        for i, p in enumerate(PATTERNS)
    )
    logs = (
        f'[[logs]]\npaths = ["{path}"]\nstart_at = "beginning"\ndefault_rules = false\n'
        f"detectors = []\n{rules}"
    )
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        api = free_port()
        started = time.monotonic()
        agent = _agent(Path(tmp), logs, api, free_port())
        first: tuple[float, int, float] | None = None  # when progress was first seen
        try:
            while True:
                status = _status(api)
                files = ((status or {}).get("logs") or {}).get("files") or []
                offset = files[0]["offset"] if files else 0
                if first is None and offset > 0:
                    first = (time.monotonic(), offset, cpu_seconds(agent.pid))
                if offset >= size:
                    break
                if agent.poll() is not None:
                    raise SystemExit("the agent exited")
                time.sleep(0.02)
            done = time.monotonic()
            cpu = cpu_seconds(agent.pid)
        finally:
            agent.terminate()
            agent.wait(30)
    total = size / 1e6 / (done - started)
    print(
        f"end-to-end tailing, from process start: {total:8.1f} MB/s  "
        f"({done - started:.2f} s wall, {cpu:.2f} s CPU)  ratio {total / grep_mbps:.2f}x grep"
    )
    if first is not None and done > first[0]:
        steady = (size - first[1]) / 1e6 / (done - first[0])
        print(
            f"end-to-end tailing, once reading:       {steady:8.1f} MB/s  "
            f"({cpu - first[2]:.2f} s CPU)  ratio {steady / grep_mbps:.2f}x grep  (target >= 0.5x)"
        )


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
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs each, best kept")
    parser.add_argument("--idle-files", type=int, default=200, help="files for the idle figure")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle measurement")
    args = parser.parse_args(argv)
    path = the_log(args.mb, args.cache)
    ok, grep_mbps = bench_matcher(path, args.runs)
    print()
    bench_tailing(path, grep_mbps)
    bench_idle(args.idle_files, args.idle_seconds)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
