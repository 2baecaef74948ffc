#!/usr/bin/env python3
"""Synthetic check cost: 100 HTTP checks every 10 s (or `--interval 1`,
issue 17's figure), vigil against Prometheus blackbox_exporter, side by side.

The targets are 100 URLs on one local nginx (Debian's nginx-light; its CPU
is not counted). vigil runs with 100 `[[checks]]` of type http at a 10 s
interval and nothing else (no host metrics, no hub; its self-metrics and
default alert rules stay on, as they would in use). blackbox_exporter
(Debian's prometheus-blackbox-exporter) gets the same 100 probes every
10 s from this script, which plays Prometheus: each target scraped at a
fixed offset in the interval, as Prometheus spreads its scrapes (the
script's own CPU is not counted, as Prometheus' would not be).

Prints CPU seconds, CPU percent and RSS of each over the measured period,
and the ratio vigil/blackbox of CPU seconds, for the whole agent and for
its checks alone (minus a second agent with no checks, run alongside).
Target (issue #6 at 10 s, issue 17 at 1 s): <= 1.0. With `--runs N` the
whole comparison runs N times and the median of each figure is printed.

    .venv/bin/python -m bench.checks [--interval 10] [--seconds 60] [--warmup 15] [--runs 1]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds, free_port, status_kib

CHECKS = 100

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/nginx-error.log;
user root;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {base}/tmp; proxy_temp_path {base}/tmp;
    fastcgi_temp_path {base}/tmp; uwsgi_temp_path {base}/tmp; scgi_temp_path {base}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

BLACKBOX_CONF = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""

VIGIL_HEAD = """\
[agent]
state_dir = "{base}/state"
log_format = "json"

[host]
enabled = []
"""

VIGIL_CHECK = """
[[checks]]
name = "t{i}"
type = "http"
url = "http://127.0.0.1:{port}/t{i}"
interval = "{interval:g}s"
timeout = "{timeout:g}s"
"""


async def play_prometheus(port: int, nginx: int, stop: float, interval: float) -> int:
    """Scrape /probe for each target every `interval` at its own offset."""
    done = 0

    async def target(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal done
        url = f"http://127.0.0.1:{port}/probe"
        params = {"module": "http_2xx", "target": f"http://127.0.0.1:{nginx}/t{i}"}
        await asyncio.sleep(i * interval / CHECKS)
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                async with session.get(url, params=params) as resp:
                    if "probe_success 1" in await resp.text():
                        done += 1
            except aiohttp.ClientError:
                pass  # the exporter still starting
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(target(session, i) for i in range(CHECKS)))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    blackbox = shutil.which("prometheus-blackbox-exporter")
    if not os.path.exists(nginx) or blackbox is None:
        print(
            "needs nginx and blackbox_exporter: apt-get install nginx-light "
            "prometheus-blackbox-exporter (or `make bench`)",
            file=sys.stderr,
        )
        return 1
    runs = []
    for _ in range(args.runs):
        one = run_once(args, nginx, blackbox)
        if one is None:
            return 1
        runs.append(one)
    report(args, runs)
    return 0


Figures = dict[str, float]  # per process: CPU seconds, RSS MB; and "elapsed"


def run_once(args: argparse.Namespace, nginx: str, blackbox: str) -> Figures | None:
    base = Path(tempfile.mkdtemp(prefix="vigil-bench-checks-"))
    (base / "tmp").mkdir()
    nginx_port, bb_port = free_port(), free_port()
    (base / "nginx.conf").write_text(NGINX_CONF.format(base=base, port=nginx_port))
    (base / "blackbox.yml").write_text(BLACKBOX_CONF)
    conf = VIGIL_HEAD.format(base=base) + "".join(
        VIGIL_CHECK.format(
            i=i, port=nginx_port, interval=args.interval, timeout=min(5.0, args.interval)
        )
        for i in range(CHECKS)
    )
    (base / "agent.toml").write_text(conf)
    (base / "idle.toml").write_text(VIGIL_HEAD.format(base=base / "idle"))

    def start(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(base / f"{name}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1]
        )

    procs = {
        "nginx": start("nginx", [nginx, "-c", str(base / "nginx.conf"), "-p", str(base)]),
        "blackbox": start(
            "blackbox",
            [
                blackbox,
                f"--config.file={base / 'blackbox.yml'}",
                f"--web.listen-address=127.0.0.1:{bb_port}",
            ],
        ),
        "vigil": start(
            "vigil", [sys.executable, "-m", "agent", "run", "--config", str(base / "agent.toml")]
        ),
        # the same agent with no checks: what the checks themselves cost
        "idle": start(
            "idle", [sys.executable, "-m", "agent", "run", "--config", str(base / "idle.toml")]
        ),
    }
    try:
        total = args.warmup + args.seconds
        stop = time.monotonic() + total
        driver = subprocess.Popen(  # Prometheus' part, in a process of its own
            [
                sys.executable,
                "-m",
                "bench.checks",
                "--drive",
                str(bb_port),
                str(nginx_port),
                str(total),
                str(args.interval),
            ],
            cwd=Path(__file__).parents[1],
        )
        time.sleep(args.warmup)  # start-up (imports, first runs) is not the steady cost
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"{name} exited early; see {base}/{name}.log", file=sys.stderr)
                return None
        measured = ("vigil", "idle", "blackbox")
        before = {n: cpu_seconds(procs[n].pid) for n in measured}
        t0 = time.monotonic()
        rss: dict[str, list[float]] = {n: [] for n in measured}
        while time.monotonic() < stop:
            time.sleep(1.0)
            for n in measured:
                rss[n].append(status_kib(procs[n].pid) / 1024)
        elapsed = time.monotonic() - t0
        used = {n: cpu_seconds(procs[n].pid) - before[n] for n in measured}
        driver.wait(30)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)

    shutil.rmtree(base, ignore_errors=True)
    figures = {n: used[n] for n in measured}
    figures |= {f"{n} rss": sorted(rss[n])[len(rss[n]) // 2] for n in measured}
    return figures | {"elapsed": elapsed}


def report(args: argparse.Namespace, runs: list[Figures]) -> None:
    fig = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    elapsed = fig["elapsed"]
    print(
        f"{CHECKS} HTTP checks every {args.interval:g} s against a local nginx, "
        f"{elapsed:.0f} s measured after {args.warmup:.0f} s warm-up"
        + (f", median of {len(runs)} runs" if len(runs) > 1 else "")
    )
    print(f"{'':18} {'CPU s':>8} {'CPU %':>7} {'ms/probe':>9} {'RSS MB':>8}")
    probes = CHECKS * elapsed / args.interval
    rows = (
        ("vigil", "vigil agent"),
        ("idle", "vigil, no checks"),
        ("blackbox", "blackbox_exporter"),
    )
    for n, label in rows:
        print(
            f"{label:18} {fig[n]:8.3f} {100 * fig[n] / elapsed:7.2f} "
            f"{1000 * fig[n] / probes:9.3f} {fig[n + ' rss']:8.1f}"
        )
    ratios = sorted(r["vigil"] / r["blackbox"] for r in runs if r["blackbox"])
    alone = sorted((r["vigil"] - r["idle"]) / r["blackbox"] for r in runs if r["blackbox"])
    spread = f" (runs {ratios[0]:.2f}-{ratios[-1]:.2f})" if len(runs) > 1 else ""
    print(
        f"ratio vigil/blackbox_exporter CPU seconds: {statistics.median(ratios):.2f}"
        f"{spread}  (target <= 1.0)"
    )
    print(f"  the checks alone (vigil minus vigil with no checks): {statistics.median(alone):.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--drive":
        port, nginx_port, seconds, interval = sys.argv[2:]
        ok = asyncio.run(
            play_prometheus(
                int(port), int(nginx_port), time.monotonic() + float(seconds), float(interval)
            )
        )
        print(f"blackbox probes that succeeded: {ok}", file=sys.stderr)
    else:
        raise SystemExit(main())
