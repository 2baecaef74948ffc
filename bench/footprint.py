#!/usr/bin/env python3
"""Memory footprint: `vigil run` with the default configuration (host
metrics, default alert rules, no hub, no logs, no checks: what `vigil run`
does out of the box), and `vigil hub run` idle, then steady after a
fleet's batches, and the peak.

The agent runs for `--agent-seconds` (several 10 s collection cycles) and
its settled VmRSS is read. Target (issue 12): under 32 MB; issue 17: 30 MB.

Then the agent with everything on (issue 17: under 45 MB), as
bench/soak.py runs it: host metrics at 1 s and the default alert rules,
20 checks (15 http, 5 tcp, every 10 s) against a local nginx, two logs
written at 200 lines/s each with the default rules and detectors, and a
hub it pushes to. Its RSS after `--agent-seconds`, median of `--runs`.

Starts the real hub on loopback with a default config, waits until it
answers /healthz and settles, reads VmRSS; then `--hosts` simulated agents
each push `--rounds` batches (one collection cycle of this host each,
msgpack + zstd, as the shipper sends them), 8 at a time; after they stop,
RSS is read again once it settles. Target (issue 12): steady under 45 MB.
MB here are MiB (VmRSS kB / 1024), as in the other benchmarks.

    .venv/bin/python -m bench.footprint [--hosts 50] [--rounds 20] [--agent-seconds 45] [--runs 1]
        [--python /usr/lib/vigil/bin/python]

`--python` runs the agents with another interpreter and its own copy of
vigil, from outside this tree: `/usr/lib/vigil/bin/python` measures the
installed Debian package (`make deb`, then `dpkg -i`), which is what users
run (Debian's python3.11, and none of the development tools that load
libraries into this tree's virtualenv, such as Playwright's greenlet).

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import start_hub, status_kib, wait_healthy
from hub.auth import host_token

TARGET_MB = 45
AGENT_TARGET_MB = 32
FULL_TARGET_MB = 45


def agent_cmd(python: str, config: Path) -> list[str]:
    return [python, "-m", "agent", "run", "--config", str(config)]


def agent_rss_kib(seconds: float, python: str) -> tuple[int, int]:
    """Settled and peak VmRSS of `vigil run` with only a state directory set."""
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-footprint-agent-"))
    (tmp / "agent.toml").write_text(f'[agent]\nstate_dir = "{tmp / "state"}"\n')
    # cwd: `-m agent` imports the interpreter's own vigil, not this tree's
    agent = subprocess.Popen(
        agent_cmd(python, tmp / "agent.toml"), stdout=subprocess.DEVNULL, cwd=tmp
    )
    try:
        steady = settled_rss_kib(agent.pid, seconds)
        return steady, status_kib(agent.pid, "VmHWM")
    finally:
        agent.terminate()
        agent.wait(30)


def full_agent_rss_kib(seconds: float, python: str) -> tuple[int, int]:
    """Settled and peak VmRSS of `vigil run` with logs, checks, alerts and a hub."""
    from bench.common import free_port
    from bench.soak import NGINX_CONF, ROTATIONS, Writer, agent_config

    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-footprint-full-"))
    (tmp / "log").mkdir()
    (tmp / "tmp").mkdir()
    secret = secrets.token_hex(32).encode()
    (tmp / "secret").write_bytes(secret + b"\n")
    (tmp / "secret").chmod(0o600)
    (tmp / "token").write_text(host_token("soak-1", secret) + "\n")
    hub, url = start_hub(tmp, f'secret_file = "{tmp / "secret"}"\n')
    nginx_port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(base=tmp, port=nginx_port))
    nginx = subprocess.Popen(
        [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    writers = [Writer(tmp / "log" / name, 200) for name in ROTATIONS]
    agent = None
    try:
        wait_healthy(url, hub)
        for w in writers:
            w.path.touch()
            w.start()
        (tmp / "agent.toml").write_text(agent_config(tmp, url, nginx_port))
        agent = subprocess.Popen(
            agent_cmd(python, tmp / "agent.toml"), stdout=subprocess.DEVNULL, cwd=tmp
        )
        steady = settled_rss_kib(agent.pid, seconds)
        return steady, status_kib(agent.pid, "VmHWM")
    finally:
        for w in writers:
            w.stop.set()
        for p in (agent, hub, nginx):
            if p is not None:
                p.terminate()
                p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def settled_rss_kib(pid: int, seconds: float = 3.0) -> int:
    """VmRSS once it has stopped moving: the last of a few readings."""
    time.sleep(seconds)
    readings = []
    for _ in range(5):
        readings.append(status_kib(pid))
        time.sleep(0.2)
    return readings[-1]


def push(url: str, secret: bytes, host: str, rounds: int, cycle: list[dict]) -> int:
    token = host_token(host, secret)
    stream, seq, failed = secrets.token_hex(16), 1, 0
    for _ in range(rounds):
        now = time.time()
        records = [dict(r, ts=now) for r in cycle]
        body = protocol.compress(protocol.encode_batch(host, stream, seq, records, "bench", now))
        request = urllib.request.Request(
            url + "/v1/ingest",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Encoding": "zstd"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                resp.read()
            seq += len(records)
        except OSError:
            failed += 1
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--agent-seconds", type=float, default=45.0)
    parser.add_argument("--runs", type=int, default=1, help="of each agent measurement")
    parser.add_argument("--python", default=sys.executable, help="the agents' interpreter")
    args = parser.parse_args()
    if args.python != sys.executable:
        print(f"agents run by {args.python}")
    median = f", median of {args.runs} runs" if args.runs > 1 else ""
    runs = [agent_rss_kib(args.agent_seconds, args.python) for _ in range(args.runs)]
    agent_steady = statistics.median(r[0] for r in runs)
    agent_peak = statistics.median(r[1] for r in runs)
    print(f"vigil run, default configuration, after {args.agent_seconds:.0f} s{median}:")
    print(f"{'RSS':>18} {agent_steady / 1024:6.1f} MB   (target < {AGENT_TARGET_MB} MB)")
    print(f"{'peak (VmHWM)':>18} {agent_peak / 1024:6.1f} MB")
    runs = [full_agent_rss_kib(args.agent_seconds, args.python) for _ in range(args.runs)]
    full_steady = statistics.median(r[0] for r in runs)
    full_peak = statistics.median(r[1] for r in runs)
    print(
        f"vigil run, logs at 2 x 200 lines/s, 20 checks, alerts, pushing to a hub, "
        f"after {args.agent_seconds:.0f} s{median}:"
    )
    print(f"{'RSS':>18} {full_steady / 1024:6.1f} MB   (target < {FULL_TARGET_MB} MB)")
    print(f"{'peak (VmHWM)':>18} {full_peak / 1024:6.1f} MB")
    cycle = one_cycle_of_records()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-footprint-"))
    hub, url = start_hub(tmp)
    try:
        wait_healthy(url, hub)
        idle = settled_rss_kib(hub.pid)
        secret = (tmp / "hub.secret").read_bytes().strip()
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            failed = sum(
                pool.map(
                    lambda i: push(url, secret, f"sim-{i:04d}", args.rounds, cycle),
                    range(args.hosts),
                )
            )
        elapsed = time.monotonic() - start
        steady = settled_rss_kib(hub.pid)
        peak = status_kib(hub.pid, "VmHWM")
    finally:
        hub.terminate()
        hub.wait(30)
    batches = args.hosts * args.rounds
    print(
        f"vigil hub run: {batches} batches of {len(cycle)} records from {args.hosts} hosts"
        f" in {elapsed:.1f} s, {failed} failed"
    )
    print(f"{'RSS idle':>18} {idle / 1024:6.1f} MB")
    print(f"{'RSS after ingest':>18} {steady / 1024:6.1f} MB   (target < {TARGET_MB} MB)")
    print(f"{'peak (VmHWM)':>18} {peak / 1024:6.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
