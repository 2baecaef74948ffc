#!/usr/bin/env python3
"""Host-metrics cost: `vigil run` against collectd, side by side.

Both collect every second for the same period (60 s by default): vigil with
nothing but its defaults (host metrics, self-metrics, no hub), collectd
(Debian's collectd-core) with the plugins cpu, memory, disk, df, interface
and load at `Interval 1` and no write plugin. Prints, per run and as the
median of `--runs` runs, the CPU each used per collection cycle, the ratio
vigil/collectd, and vigil's peak and steady RSS. Targets (issue 17): ratio
<= 0.5, steady RSS <= 30 MB.

    .venv/bin/python -m bench.host_metrics [--seconds 60] [--warmup 5] [--runs 5]
        [--python /usr/lib/vigil/bin/python]

`--python` runs vigil with another interpreter and its own copy of vigil:
`/usr/lib/vigil/bin/python` is the installed Debian package (`make deb`,
`dpkg -i`), what users run: Debian's python3.11, built with profile-guided
and link-time optimisation, where this tree's virtualenv may sit on a
plainer build (pyenv's default has neither).

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
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


def one_run(
    collectd: str, seconds: float, warmup: float, python: str = sys.executable
) -> dict[str, float] | None:
    """vigil and collectd side by side once: CPU ms per cycle of each, and
    vigil's steady and peak RSS in MB; None when one of them failed."""
    base = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    (base / "collectd.conf").write_text(COLLECTD_CONF.format(base=base))
    (base / "agent.toml").write_text(VIGIL_CONF.format(base=base))
    vigil_cmd = [python, "-m", "agent", "run", "--config", str(base / "agent.toml")]
    procs = {
        "vigil": subprocess.Popen(
            vigil_cmd,
            stdout=open(base / "vigil.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            # another interpreter imports its own vigil, not this tree's
            cwd=Path(__file__).parents[1] if python == sys.executable else base,
        ),
        "collectd": subprocess.Popen(
            [collectd, "-f", "-C", str(base / "collectd.conf")],
            stdout=open(base / "collectd.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        ),
    }
    try:
        time.sleep(warmup)  # start-up (imports, first runs) is not the steady cost
        for name, p in procs.items():
            if p.poll() is not None:
                print(f"{name} exited early; see {base}/{name}.log", file=sys.stderr)
                return None
        start = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        t0 = time.monotonic()
        rss_samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss_samples.append(status_kib(procs["vigil"].pid, "VmRSS"))
        cycles = time.monotonic() - t0  # one collection per second
        used = {name: cpu_seconds(p.pid) - start[name] for name, p in procs.items()}
        peak = status_kib(procs["vigil"].pid, "VmHWM")
        collectd_rss = status_kib(procs["collectd"].pid, "VmRSS")
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    shutil.rmtree(base, ignore_errors=True)
    return {
        "vigil_ms": used["vigil"] / cycles * 1000,
        "collectd_ms": used["collectd"] / cycles * 1000,
        "ratio": used["vigil"] / used["collectd"] if used["collectd"] else float("inf"),
        "rss": sorted(rss_samples)[len(rss_samples) // 2] / 1024,
        "peak": peak / 1024,
        "collectd_rss": collectd_rss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5, help="the figures are their medians")
    parser.add_argument("--python", default=sys.executable, help="vigil's interpreter")
    args = parser.parse_args()

    collectd = shutil.which("collectd") or "/usr/sbin/collectd"
    if not os.path.exists(collectd):
        print(
            "collectd not found: apt-get install collectd-core (or `make bench`)", file=sys.stderr
        )
        return 1
    runs = []
    print(f"host metrics, every 1 s, {args.runs} runs of {args.seconds:.0f} s"
          f" (after {args.warmup:.0f} s warm-up each), vigil run by {args.python}")  # fmt: skip
    head = ("run", "vigil ms/cycle", "collectd ms/cycle", "ratio", "vigil RSS MB")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (4, 15, 18, 6, 13), strict=True)))
    for i in range(args.runs):
        r = one_run(collectd, args.seconds, args.warmup, args.python)
        if r is None:
            return 1
        runs.append(r)
        print(f"{i + 1:>4} {r['vigil_ms']:15.2f} {r['collectd_ms']:18.2f} {r['ratio']:6.2f}"
              f" {r['rss']:13.1f}", flush=True)  # fmt: skip
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{'':10} {'ms/cycle':>9} {'RSS MB':>8}   (medians)")
    print(f"{'vigil':10} {med['vigil_ms']:9.2f} {med['rss']:8.1f}")
    print(f"{'collectd':10} {med['collectd_ms']:9.2f} {med['collectd_rss']:8.1f}")
    print(f"ratio vigil/collectd CPU: {med['ratio']:.2f}  (target <= 0.5, issue 17)")
    print(
        f"vigil RSS: steady {med['rss']:.1f} MB, peak {med['peak']:.1f} MB"
        f"  (target steady <= 30 MB, issue 17; collectd {med['collectd_rss']:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
