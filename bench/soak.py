#!/usr/bin/env python3
"""One-hour soak (issue 17): the agent as a busy host runs it, with the
faults production combines, watched from outside every minute.

- `vigil run` with host metrics every 1 s, the default alert rules, 20
  checks (15 http, 5 tcp, every 10 s) against a local nginx, and two
  tailed logs, each written at 200 lines/s by this script, with the
  default rules, detectors and rate limits on plus one rule of ours
  (`seq`) that matches every line;
- the real `logrotate` rotates both logs every 5 minutes (one `create`,
  the writer reopening as after a postrotate signal; one
  `create`+`compress`+`delaycompress`);
- the hub is stopped for 2 minutes every 15 minutes (from minute 7);
- the agent is killed with SIGKILL twice and started again at once: at
  minute 5, in the middle of a rotation, and at minute 8, while the hub is
  down.

Every minute it prints the agent's RSS, open fds, CPU and the state
directory's size. At the end, from the hub:
- log lines: the hub's `log_matches_total{rule="seq"}` per log against
  the lines written (lost if lower, counted twice if higher), and the
  `seq` events (rate-limited to 20 a minute) that arrived more than once;
- metric samples: `memory_used_bytes`, one sample a second, its repeated
  timestamps (duplicates) and its missing seconds outside the start and
  the two kills (lost). A kill may cost the samples still in memory (at
  most `flush_interval`, 1 s, by design), and a start puts the collection
  grid at a random phase (up to one interval without a sample); those are
  shown apart.
- RSS drift: the last process's RSS from 10 minutes after its start to
  the end (target under 5 %), and its fds (target: flat).

    .venv/bin/python -m bench.soak [--minutes 60] [--scale 1.0]

`--scale 0.1` runs the same schedule ten times faster (a 6-minute trial).
A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.checks import NGINX_CONF
from bench.common import cpu_seconds, free_port, status_kib, wait_healthy
from hub.auth import host_token

HOST = "soak-1"
LINES_PER_SECOND = 200
LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
ROTATIONS = {"a.log": "create", "b.log": "create\n    compress\n    delaycompress"}


class Writer(threading.Thread):
    """Appends numbered lines at a steady rate through an O_APPEND file;
    `reopen` is the daemon's answer to logrotate's postrotate signal."""

    def __init__(self, path: Path, rate: int) -> None:
        super().__init__(daemon=True)
        self.path, self.rate = path, rate
        self.count = 0
        self.stop = threading.Event()
        self.reopen = threading.Event()

    def line(self, n: int) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        if n % 500 == 0:  # now and then what the default rules and detectors look for
            return f"{stamp}Z app[42]: ERROR upstream timed out after 30000ms seq={n} db=orders\n"
        return f"{stamp}Z app[42]: INFO GET /api/items/{n % 977} 200 {n % 89}ms seq={n} \n"

    def run(self) -> None:
        fh = open(self.path, "a")  # noqa: SIM115 - reopened below
        start = time.monotonic()
        try:
            while not self.stop.is_set():
                due = int((time.monotonic() - start) * self.rate)
                if self.reopen.is_set():
                    self.reopen.clear()
                    fh.close()
                    fh = open(self.path, "a")  # noqa: SIM115
                while self.count < due:
                    self.count += 1
                    fh.write(self.line(self.count))
                fh.flush()
                time.sleep(0.02)
        finally:
            fh.close()


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def get_all(url: str, key: str) -> list[Any]:
    items, cursor = [], ""
    while True:
        page = get(url + cursor)
        items += page[key]
        if page["next"] is None:
            return items
        cursor = "&cursor=" + page["next"]


def agent_config(base: Path, hub_url: str, nginx: int, every_event: bool = False) -> str:
    checks = "".join(
        f'[[checks]]\nname = "web{i}"\ntype = "http"\nurl = "http://127.0.0.1:{nginx}/c{i}"\n'
        'interval = "10s"\ntimeout = "5s"\n'
        for i in range(15)
    ) + "".join(
        f'[[checks]]\nname = "port{i}"\ntype = "tcp"\naddress = "127.0.0.1:{nginx}"\n'
        'interval = "10s"\ntimeout = "5s"\n'
        for i in range(5)
    )
    # start_at: the files are new, and their first lines come before the agent's first scan
    logs = "".join(
        f'[[logs]]\npaths = ["{base / "log" / name}"]\nstart_at = "beginning"\n'
        + ("events_per_minute = 10000000\n" if every_event else "")
        + "  [[logs.rules]]\n  name = \"seq\"\n  pattern = 'seq=(?P<seq>[0-9]+) '\n"
        '  severity = "info"\n'
        for name in ROTATIONS
    )
    return (
        f'[agent]\nhost_id = "{HOST}"\nstate_dir = "{base / "state"}"\nlog_format = "json"\n'
        f'[hub]\nurl = "{hub_url}"\ntoken_file = "{base / "token"}"\n'
        '[host]\ninterval = "1s"\n' + checks + logs
    )


class Soak:
    def __init__(self, base: Path, scale: float) -> None:
        self.base, self.scale = base, scale
        self.hub_port = free_port()
        self.hub_url = f"http://127.0.0.1:{self.hub_port}"
        self.agent: subprocess.Popen[bytes] | None = None
        self.hub: subprocess.Popen[bytes] | None = None
        self.kills: list[tuple[float, float]] = []  # (wall time of the kill, of the restart)

    def start_hub(self) -> None:
        with open(self.base / "hub.log", "ab") as log:
            self.hub = subprocess.Popen(
                [sys.executable, "-m", "agent", "hub", "run", "--config",
                 str(self.base / "hub.toml")],
                stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
            )  # fmt: skip
        wait_healthy(self.hub_url, self.hub, timeout=60)

    def stop_hub(self) -> None:
        assert self.hub is not None
        self.hub.terminate()
        self.hub.wait(60)

    def start_agent(self) -> None:
        with open(self.base / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.base / "agent.toml")],
                stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
            )  # fmt: skip

    def kill_agent(self) -> None:
        assert self.agent is not None
        killed = time.time()
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait()
        self.start_agent()
        self.kills.append((killed, time.time()))

    def rotate(self, writers: list[Writer], kill: bool) -> None:
        """logrotate runs; a kill lands between its renames and the writers' reopen."""
        subprocess.run(
            [LOGROTATE, "-f", "-s", str(self.base / "logrotate.state"),
             str(self.base / "logrotate.conf")],
            check=True, timeout=60,
        )  # fmt: skip
        if kill:
            self.kill_agent()
        for w in writers:
            w.reopen.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--scale", type=float, default=1.0, help="time factor of the schedule")
    parser.add_argument(
        "--every-event",
        action="store_true",
        help="no rate limit: every line an event, the missing ones listed (to find a loss)",
    )
    args = parser.parse_args()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx_bin) or not os.path.exists(LOGROTATE):
        print("needs nginx and logrotate: apt-get install nginx-light logrotate", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    (base / "log").mkdir()
    (base / "tmp").mkdir()
    soak = Soak(base, args.scale)
    minute = 60.0 * args.scale

    secret = secrets.token_hex(32).encode()
    (base / "secret").write_bytes(secret + b"\n")
    os.chmod(base / "secret", 0o600)
    (base / "token").write_text(host_token(HOST, secret) + "\n")
    (base / "hub.toml").write_text(
        f'[hub]\nlisten = "127.0.0.1:{soak.hub_port}"\ndata_dir = "{base / "hub"}"\n'
        f'secret_file = "{base / "secret"}"\n'
    )
    nginx_port = free_port()
    (base / "nginx.conf").write_text(NGINX_CONF.format(base=base, port=nginx_port))
    (base / "agent.toml").write_text(agent_config(base, soak.hub_url, nginx_port, args.every_event))
    (base / "logrotate.conf").write_text(
        "".join(
            f"{base / 'log' / name} {{\n    rotate 4\n    missingok\n    {how}\n}}\n"
            for name, how in ROTATIONS.items()
        )
    )
    writers = [Writer(base / "log" / name, LINES_PER_SECOND) for name in ROTATIONS]
    for w in writers:
        w.path.touch()

    nginx = subprocess.Popen(
        [nginx_bin, "-c", str(base / "nginx.conf"), "-p", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"soak of {args.minutes:g} min (schedule x{args.scale:g}) in {base}", flush=True)
    print(
        f"{'min':>4} {'RSS MB':>7} {'fds':>4} {'CPU %':>6} {'state MB':>9} {'hub':>4}  events",
        flush=True,
    )
    samples: list[tuple[float, float, int]] = []  # (minute, RSS MB, fds) of the running agent
    started_at = time.time()
    try:
        soak.start_hub()
        soak.start_agent()
        for w in writers:
            w.start()
        t0 = time.monotonic()
        events: list[tuple[float, str]] = []
        for m in range(5, int(args.minutes), 5):
            events.append((m * minute, "rotate+kill" if m == 5 else "rotate"))
        for m in range(7, int(args.minutes) - 2, 15):
            events += [(m * minute, "hub down"), ((m + 2) * minute, "hub up")]
        events.append((8 * minute, "kill"))
        events += [(m * minute, "sample") for m in range(1, int(args.minutes) + 1)]
        events.sort()
        assert soak.agent is not None
        cpu_before, last_pid, said = 0.0, 0, []
        for at, what in events:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if what.startswith("rotate"):
                soak.rotate(writers, kill=what.endswith("kill"))
                said.append(what)
            elif what == "kill":
                soak.kill_agent()
                said.append("kill")
            elif what == "hub down":
                soak.stop_hub()
                said.append("hub down")
            elif what == "hub up":
                soak.start_hub()
                said.append("hub up")
            else:
                pid = soak.agent.pid
                cpu = cpu_seconds(pid)
                used = cpu - cpu_before if pid == last_pid else float("nan")
                cpu_before, last_pid = cpu, pid
                rss = status_kib(pid) / 1024
                fds = len(os.listdir(f"/proc/{pid}/fd"))
                up = soak.hub is not None and soak.hub.poll() is None
                mins = (time.monotonic() - t0) / minute
                samples.append((mins, rss, fds))
                print(
                    f"{mins:4.0f} {rss:7.1f} {fds:4d} {100 * used / minute:6.2f} "
                    f"{dir_bytes(base / 'state') / 1e6:9.2f} {'up' if up else 'down':>4}  "
                    + ", ".join(said),
                    flush=True,
                )
                said = []
        for w in writers:
            w.stop.set()
            w.join()
        if soak.hub is None or soak.hub.poll() is not None:
            soak.start_hub()
        report(soak, writers, samples, started_at, minute)
    finally:
        for p in (soak.agent, soak.hub, nginx):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(60)
    return 0


def log_name(path: str) -> str:
    """a.log for .../a.log and its rotations (a.log.1, a.log.2.gz)."""
    return Path(path).name.split(".log")[0] + ".log"


def hub_matches(url: str) -> dict[str, float]:
    """The hub's latest log_matches_total{rule="seq"} per log file."""
    series = get(f"{url}/v1/metrics?host={HOST}&name=log_matches_total")["series"]
    out: dict[str, float] = {}
    for s in series:
        if s["labels"].get("rule") == "seq":
            name = log_name(s["labels"].get("file", "?"))
            out[name] = out.get(name, 0) + s["points"][-1][1]
    return out


def ranges(numbers: list[int]) -> str:
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in out)


def report(
    soak: Soak,
    writers: list[Writer],
    samples: list[tuple[float, float, int]],
    started_at: float,
    minute: float,
) -> None:
    url = soak.hub_url
    written = {w.path.name: w.count for w in writers}
    # until the hub holds every line, or its figure stops moving for 30 s
    got: dict[str, float] = {}
    last, since = None, time.monotonic()
    while time.monotonic() - since < 30:
        got = hub_matches(url)
        if got == {k: float(v) for k, v in written.items()}:
            break
        if got != last:
            last, since = got, time.monotonic()
        time.sleep(1.0)
    print("\nlog lines (hub's log_matches_total against lines written):")
    for name, count in written.items():
        at_hub = got.get(name, 0.0)
        print(
            f"  {name}: written {count}, at the hub {at_hub:.0f}: "
            f"lost {max(0, count - at_hub):.0f}, counted twice {max(0, at_hub - count):.0f}"
        )
    events = get_all(f"{url}/v1/events?host={HOST}&kind=log&limit=1000", "events")
    seen: dict[tuple[str, str], int] = {}
    for e in events:
        fields = e["fields"]
        if fields.get("rule") == "seq":
            key = (log_name(str(fields.get("file"))), str(fields.get("fields", {}).get("seq")))
            seen[key] = seen.get(key, 0) + 1
    for name, count in written.items():
        # lines matching a default rule as well are that rule's events (every 500th)
        missing = [n for n in range(1, count + 1) if n % 500 and (name, str(n)) not in seen]
        if len(missing) < count / 2:  # every line was an event (--every-event)
            print(f"  {name}: seq missing at the hub: {ranges(missing) or 'none'}")
    print(
        f"  seq events at the hub (rate-limited): {len(seen)}, "
        f"arrived more than once: {sum(1 for n in seen.values() if n > 1)}"
    )

    points = [
        p[0]
        for s in get_all(
            f"{url}/v1/metrics?host={HOST}&name=memory_used_bytes&since={started_at:.0f}",
            "series",
        )
        for p in s["points"]
    ]
    stamps = sorted(points)
    dupes = len(stamps) - len(set(stamps))
    missing, near_kill = 0, 0
    for a, b in itertools.pairwise(stamps):
        gap = round(b - a) - 1  # samples that should have come between, one a second
        if gap <= 0:
            continue
        # a start (the first, and after each kill) samples at once, then on a
        # grid of random phase: up to one interval more without a sample
        starts = [(started_at, started_at), *soak.kills]
        if any(k - 3 <= a and b <= r + 3 for k, r in starts):
            near_kill += gap
        else:
            missing += gap
            print(f"  no sample for {b - a:.1f} s after minute {(a - started_at) / minute:.1f}")
    print(
        f"metric samples (memory_used_bytes, 1 s): {len(stamps)} at the hub, "
        f"duplicated {dupes}, missing {missing}; "
        f"around the start and the {len(soak.kills)} kills {near_kill} (the new grid's phase, "
        "or in memory at the kill: at most flush_interval, by design)"
    )

    # the last process's RSS and fds from 10 minutes after its start
    last_start = (soak.kills[-1][1] - started_at) / minute if soak.kills else 0.0
    steady = [s for s in samples if s[0] >= last_start + 10]
    if len(steady) >= 2:
        first = steady[0][1]
        drift = 100 * (max(s[1] for s in steady) - first) / first
        end = 100 * (steady[-1][1] - first) / first
        fds = sorted({s[2] for s in steady})
        print(
            f"RSS of the last agent process from minute {steady[0][0]:.0f}: "
            f"{first:.1f} -> {steady[-1][1]:.1f} MB (end {end:+.1f} %, highest {drift:+.1f} %; "
            f"target under 5 %); open fds {fds[0]}..{fds[-1]}"
        )
    else:
        print("too short to measure RSS drift (10 minutes after the last restart)")


if __name__ == "__main__":
    raise SystemExit(main())
