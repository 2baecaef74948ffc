#!/usr/bin/env python3
"""Host-metrics cost: `vigil run` against collectd, side by side.

Both collect every second for the same period (60 s by default): vigil with
nothing but its defaults (host metrics, self-metrics, no hub), collectd
(Debian's collectd-core) with the plugins cpu, memory, disk, df, interface
and load at `Interval 1` and no write plugin. Prints the CPU seconds each
used, per collection cycle, the ratio vigil/collectd, and vigil's peak and
steady RSS. Targets (issue #2): ratio <= 0.5, steady RSS <= 40 MB.

    .venv/bin/python -m bench.host_metrics [--seconds 60] [--warmup 5]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, status_kib

COLLECTD_CONF = """\
Interval 1
FQDNLookup false
BaseDir "{base}"
PIDFile "{base}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin disk
LoadPlugin df
LoadPlugin interface
LoadPlugin load
"""

VIGIL_CONF = """\
[agent]
state_dir = "{base}/state"
interval = "1s"
log_format = "json"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()

    collectd = shutil.which("collectd") or "/usr/sbin/collectd"
    if not os.path.exists(collectd):
        print(
            "collectd not found: apt-get install collectd-core (or `make bench`)", file=sys.stderr
        )
        return 1
    base = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    (base / "collectd.conf").write_text(COLLECTD_CONF.format(base=base))
    (base / "agent.toml").write_text(VIGIL_CONF.format(base=base))

    vigil_cmd = [sys.executable, "-m", "agent", "run", "--config", str(base / "agent.toml")]
    procs = {
        "vigil": subprocess.Popen(
            vigil_cmd,
            stdout=open(base / "vigil.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parents[1],
        ),
        "collectd": subprocess.Popen(
            [collectd, "-f", "-C", str(base / "collectd.conf")],
            stdout=open(base / "collectd.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        ),
    }
    try:
        time.sleep(args.warmup)  # start-up (imports, first runs) is not the steady cost
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"{name} exited early; see {base}/{name}.log", file=sys.stderr)
                return 1
        start = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        t0 = time.monotonic()
        rss_samples = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1.0)
            rss_samples.append(status_kib(procs["vigil"].pid, "VmRSS"))
        elapsed = time.monotonic() - t0
        used = {name: cpu_seconds(p.pid) - start[name] for name, p in procs.items()}
        peak = status_kib(procs["vigil"].pid, "VmHWM")
        collectd_rss = status_kib(procs["collectd"].pid, "VmRSS")
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)

    cycles = elapsed  # one collection per second
    steady = sorted(rss_samples)[len(rss_samples) // 2]
    print(f"host metrics, every 1 s for {elapsed:.0f} s (after {args.warmup:.0f} s warm-up)")
    print(f"{'':10} {'CPU s':>8} {'ms/cycle':>9} {'RSS MB':>8}")
    print(
        f"{'vigil':10} {used['vigil']:8.3f} {used['vigil'] / cycles * 1000:9.2f} "
        f"{steady / 1024:8.1f}"
    )
    print(
        f"{'collectd':10} {used['collectd']:8.3f} {used['collectd'] / cycles * 1000:9.2f} "
        f"{collectd_rss / 1024:8.1f}"
    )
    ratio = used["vigil"] / used["collectd"] if used["collectd"] else float("inf")
    print(f"ratio vigil/collectd CPU: {ratio:.2f}  (target <= 0.5)")
    print(
        f"vigil RSS: steady {steady / 1024:.1f} MB, peak {peak / 1024:.1f} MB"
        "  (target steady <= 40 MB)"
    )
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
