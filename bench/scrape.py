#!/usr/bin/env python3
"""What scraping node_exporter costs the agent: CPU per scrape.

Two agents side by side for the same period, both with the default
configuration (host metrics every 10 s, the default rules, self-metrics,
no hub): one also scrapes a real node_exporter (Debian's
prometheus-node-exporter, on a free port) every `--interval` (10 s, the
issue's figure). The difference of their CPU, divided by the scrapes, is
what a scrape adds: the HTTP request, the parse, the records, the alert
engine's look at them. Also printed: the parse alone of the same body
in-process (the cached path after the first, and the first), to show
where the time goes. Target (issue 18): under 2 ms per scrape.

    .venv/bin/python -m bench.scrape [--seconds 300] [--interval 10] [--runs 3]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import cpu_seconds, free_port

CONFIG = """\
[agent]
state_dir = "{base}/state-{name}"
log_format = "json"
{extra}
"""


def exporter() -> tuple[subprocess.Popen[bytes], str]:
    program = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if program is None:
        sys.exit(
            "prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)"
        )
    port = free_port()
    proc = subprocess.Popen(
        [program, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("node_exporter did not answer")


def one_run(url: str, seconds: float, interval: float, warmup: float) -> float | None:
    """CPU ms one scrape adds, from one side-by-side run; None on a failure."""
    base = Path(tempfile.mkdtemp(prefix="vigil-bench-scrape-"))
    scrape = f'[[scrape]]\nname = "node"\nurl = "{url}"\ninterval = "{interval:g}s"\n'
    procs = {}
    for name, extra in (("plain", ""), ("scraping", scrape)):
        path = base / f"{name}.toml"
        path.write_text(CONFIG.format(base=base, name=name, extra=extra))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(path)],
            stdout=open(base / f"{name}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[1],
        )
    try:
        time.sleep(warmup)  # imports and the first scrape (the parser's cache fills)
        if any(p.poll() is not None for p in procs.values()):
            print(f"an agent exited early; see {base}", file=sys.stderr)
            return None
        start = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        time.sleep(seconds)
        used = {name: cpu_seconds(p.pid) - start[name] for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    shutil.rmtree(base, ignore_errors=True)
    return (used["scraping"] - used["plain"]) / (seconds / interval) * 1000


def parse_alone(url: str) -> tuple[float, float, int]:
    """(ms of the first parse, median ms of the cached ones, samples)."""
    from collectors.promtext import Parser, relabeler

    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    parser = Parser(relabeler({"scrape": "node"}, False))
    t = time.process_time()
    samples = len(parser.parse(text, 10_000, 0.0).samples)
    first = (time.process_time() - t) * 1000
    times = []
    for _ in range(200):
        t = time.process_time()
        parser.parse(text, 10_000, 0.0)
        times.append((time.process_time() - t) * 1000)
    return first, statistics.median(times), samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    proc, url = exporter()
    try:
        first, cached, samples = parse_alone(url)
        runs = [one_run(url, args.seconds, args.interval, args.warmup) for _ in range(args.runs)]
    finally:
        proc.terminate()
        proc.wait(15)
    done = [r for r in runs if r is not None]
    if not done:
        return 1
    median = statistics.median(done)
    print(f"node_exporter: {samples} samples a scrape, every {args.interval:g} s")
    print(f"parse alone: first {first:.1f} ms, then {cached:.2f} ms (cached series)")
    print("runs (CPU ms per scrape, agent with the scrape minus agent without):")
    print("  " + ", ".join(f"{r:.2f}" for r in done))
    print(
        f"CPU per scrape: {median:.2f} ms (median of {len(done)}); target < 2 ms:"
        f" {median / 2.0:.2f}x the target"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
