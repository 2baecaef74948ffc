#!/usr/bin/env python3
"""Synthetic check cost: 100 HTTP checks every 10 s, vigil against
Prometheus blackbox_exporter, side by side.

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
Target (issue #6): <= 1.0.

    .venv/bin/python -m bench.checks [--seconds 60] [--warmup 15]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds, free_port, status_kib

CHECKS = 100
INTERVAL = 10.0

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
interval = "10s"
timeout = "5s"
"""


async def play_prometheus(port: int, nginx: int, stop: float) -> int:
    """Scrape /probe for each target every INTERVAL at its own offset."""
    done = 0

    async def target(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal done
        url = f"http://127.0.0.1:{port}/probe"
        params = {"module": "http_2xx", "target": f"http://127.0.0.1:{nginx}/t{i}"}
        await asyncio.sleep(i * INTERVAL / CHECKS)
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                async with session.get(url, params=params) as resp:
                    if "probe_success 1" in await resp.text():
                        done += 1
            except aiohttp.ClientError:
                pass  # the exporter still starting
            await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(target(session, i) for i in range(CHECKS)))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
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
    base = Path(tempfile.mkdtemp(prefix="vigil-bench-checks-"))
    (base / "tmp").mkdir()
    nginx_port, bb_port = free_port(), free_port()
    (base / "nginx.conf").write_text(NGINX_CONF.format(base=base, port=nginx_port))
    (base / "blackbox.yml").write_text(BLACKBOX_CONF)
    conf = VIGIL_HEAD.format(base=base) + "".join(
        VIGIL_CHECK.format(i=i, port=nginx_port) for i in range(CHECKS)
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
            ],
            cwd=Path(__file__).parents[1],
        )
        time.sleep(args.warmup)  # start-up (imports, first runs) is not the steady cost
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"{name} exited early; see {base}/{name}.log", file=sys.stderr)
                return 1
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

    print(
        f"{CHECKS} HTTP checks every {INTERVAL:g} s against a local nginx, "
        f"{elapsed:.0f} s measured after {args.warmup:.0f} s warm-up"
    )
    print(f"{'':18} {'CPU s':>8} {'CPU %':>7} {'ms/probe':>9} {'RSS MB':>8}")
    probes = CHECKS * elapsed / INTERVAL
    rows = (
        ("vigil", "vigil agent"),
        ("idle", "vigil, no checks"),
        ("blackbox", "blackbox_exporter"),
    )
    for n, label in rows:
        steady = sorted(rss[n])[len(rss[n]) // 2]
        print(
            f"{label:18} {used[n]:8.3f} {100 * used[n] / elapsed:7.2f} "
            f"{1000 * used[n] / probes:9.3f} {steady:8.1f}"
        )
    ratio = used["vigil"] / used["blackbox"] if used["blackbox"] else float("inf")
    print(f"ratio vigil/blackbox_exporter CPU seconds: {ratio:.2f}  (target <= 1.0)")
    only = (used["vigil"] - used["idle"]) / used["blackbox"] if used["blackbox"] else float("inf")
    print(f"  the checks alone (vigil minus vigil with no checks): {only:.2f}")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--drive":
        ok = asyncio.run(
            play_prometheus(
                int(sys.argv[2]), int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
            )
        )
        print(f"blackbox probes that succeeded: {ok}", file=sys.stderr)
    else:
        raise SystemExit(main())
