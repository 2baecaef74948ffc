#!/usr/bin/env python3
"""The screenshots of the hub's web page in docs/hub.md (docs/img/hub-*.png).

A docs tool, not a test (not in `make test`): run it from the repository
after changing the pages, and look at the images before committing them.

    .venv/bin/python -m docs.screenshots [--out docs/img] [--keep]

It starts a real `vigil hub run` on a free loopback port with a temporary
data directory and fills it over HTTP, as agents do (msgpack + zstd
batches, protocol.encode_batch, each host's own token), with 26 hours of
a small fleet at a 60 s step: web-01, web-02, db-01, cache-01,
edge-nyc-1 and edge-fra-1. Host metrics carry the names and labels the
agent sends (docs/metrics.md): CPU with a daily shape and noise, memory
slowly rising on db-01, db-01's data disk filling, network traffic, load.
Checks run every minute (`check` records, check_up, check_duration_seconds
... as collectors/checks/runner.py makes them); web-02's api-health has
failed for the last 20 minutes. Log and security events (a few errors,
failed ssh logins and a brute force), and agent alert transitions
(pending, firing, resolved, as agent/alerts/engine.py emits them). cache-01
stopped sending 10 minutes ago: the hub's liveness (`silent_after` is 40 s
here) marks it silent and raises HostSilent. The live hosts go on sending
a batch every 10 s while the pages are taken.

Then Debian's chromium, driven by Playwright, takes the pages at
1280x800 (the whole page where its PNG stays under MAX_BYTES) and the
login page from the same data restarted with a read token.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python docs/screenshots.py`

from agent.alerts.engine import fingerprint
from agent.core import protocol
from bench.common import free_port, wait_healthy
from hub.auth import host_token

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
MAX_BYTES = 150_000
STEP = 60.0
HOURS = 26
SILENT_AFTER = 40.0
VERSION = "0.1.0"
GiB = 1 << 30
M, H = 60.0, 3600.0


class Host:
    """One simulated host: its hardware and the shape of its day."""

    def __init__(
        self,
        name: str,
        cpus: int,
        memory_gib: int,
        cpu_base: float,
        cpu_peak: float,
        tz: float,
        net_peak: float,
        disks: list[
            tuple[str, str, str, float, float, float]
        ],  # mount, device, fstype, GiB, % then, % now
        memory: tuple[float, float],  # % 26 h ago, % now
    ) -> None:
        self.name, self.cpus, self.memory_total = name, cpus, memory_gib * GiB
        self.cpu_base, self.cpu_peak, self.tz, self.net_peak = cpu_base, cpu_peak, tz, net_peak
        self.disks, self.memory = disks, memory
        self.stream = secrets.token_hex(16)
        self.seq = 1
        self.boot = 0.0
        self.stopped: float | None = None  # cache-01: no batch after this
        self.spikes: list[tuple[float, float, float]] = []  # CPU: start, end, level
        self.failing: list[tuple[str, float, float]] = []  # check, from, to
        self.checks: list[tuple[str, str, str]] = []  # name, type, target
        self.events: list[dict[str, Any]] = []  # made ahead, sent with their step


def fleet(now: float) -> list[Host]:
    start = now - HOURS * H
    hosts = [
        Host("web-01", 4, 8, 12, 58, -5, 9e6, [("/", "/dev/vda1", "ext4", 80, 41, 42)], (46, 49)),
        Host("web-02", 4, 8, 11, 55, -5, 8e6, [("/", "/dev/vda1", "ext4", 80, 38, 39)], (44, 47)),
        Host(
            "db-01",
            8,
            32,
            18,
            46,
            -5,
            3e6,
            [
                ("/", "/dev/nvme0n1p2", "ext4", 100, 34, 34.5),
                ("/var/lib/postgresql", "/dev/nvme1n1", "xfs", 500, 71, 88),
            ],
            (61, 78),
        ),
        Host("cache-01", 2, 16, 6, 22, -5, 4e6, [("/", "/dev/vda1", "ext4", 40, 22, 22)], (83, 86)),
        Host(
            "edge-nyc-1", 2, 4, 8, 38, -5, 4e7, [("/", "/dev/sda1", "ext4", 40, 57, 58)], (52, 53)
        ),
        Host(
            "edge-fra-1", 2, 4, 7, 35, 1, 3.5e7, [("/", "/dev/sda1", "ext4", 40, 55, 56)], (50, 52)
        ),
    ]
    by = {h.name: h for h in hosts}
    for h in hosts:
        h.boot = start - (9 + len(h.name)) * 86400.0
    by["web-01"].checks = [
        ("homepage", "http", "https://shop.example.com/"),
        ("app-port", "tcp", ""),
    ]
    by["web-02"].checks = [("api-health", "http", "https://api.example.com/healthz")]
    by["db-01"].checks = [("postgres", "tcp", "127.0.0.1:5432")]
    by["cache-01"].checks = [("redis", "tcp", "127.0.0.1:6379")]
    by["edge-nyc-1"].checks = [("cdn-cert", "tls", "cdn.example.com:443")]
    by["edge-fra-1"].checks = [("cdn-cert", "tls", "cdn.example.com:443")]
    by["web-02"].failing = [
        ("api-health", now - 20 * M, math.inf),
        ("api-health", now - 9 * H, now - 9 * H + 4 * M),
    ]
    by["web-01"].spikes = [(now - 14 * H, now - 13 * H - 25 * M, 96.0)]
    by["cache-01"].stopped = now - 10 * M
    events(by, now)
    return hosts


def alert(host: Host, rule: str, severity: str, labels: dict[str, str], expr: str,
          summary: str, states: list[tuple[str, float]], value: float) -> None:  # fmt: skip
    """The events of an alert rule's transitions, as the agent's engine emits them."""
    full = {**labels, "alertname": rule, "host": host.name, "severity": severity}
    since = states[0][1]
    for state, ts in states:
        fields = {
            "rule": rule,
            "state": state,
            "labels": full,
            "value": value,
            "fingerprint": fingerprint(rule, labels),
            "expr": expr,
            "since": since,
        }
        message = f"{rule} {state}: {summary}"
        host.events.append(event("alert", ts, message, severity, fields))


def event(kind: str, ts: float, message: str, severity: str, fields: dict[str, Any]) -> dict:
    return {"kind": "event", "type": kind, "severity": severity, "message": message,
            "fields": fields, "ts": ts}  # fmt: skip


def log(host: Host, ts: float, file: str, rule: str, severity: str, line: str) -> None:
    fields = {"file": file, "rule": rule, "rules": [rule], "line": line, "context": [],
              "fields": {}, "new_signature": False}  # fmt: skip
    host.events.append(event("log", ts, line, severity, fields))


def events(by: dict[str, Host], now: float) -> None:
    web1, web2, db, cache, fra = (
        by[n] for n in ("web-01", "web-02", "db-01", "cache-01", "edge-fra-1")
    )
    spike_start, spike_end, _ = web1.spikes[0]
    alert(web1, "HighCPUUsage", "high", {"cpu": "all"},
          'avg_over_time(cpu_usage_percent{cpu="all"}[5m]) > 90', "CPU at 95% on web-01",
          [("pending", spike_start + 5 * M), ("firing", spike_start + 15 * M),
           ("resolved", spike_end + 4 * M)], 95.2)  # fmt: skip
    labels = {"check": "api-health", "type": "http"}
    alert(web2, "CheckFailing", "high", labels, "check_up == 0",
          "check api-health is failing on web-02",
          [("pending", now - 20 * M), ("firing", now - 18 * M)], 0.0)  # fmt: skip
    alert(web2, "CheckFailing", "high", labels, "check_up == 0",
          "check api-health is failing on web-02",
          [("pending", now - 9 * H), ("firing", now - 9 * H + 2 * M),
           ("resolved", now - 9 * H + 4 * M)], 0.0)  # fmt: skip
    disk = {"mount": "/var/lib/postgresql", "device": "/dev/nvme1n1", "fstype": "xfs"}
    alert(db, "DiskWillFillIn24h", "medium", disk,
          "predict_linear(disk_free_bytes[1h], 86400) < 0",
          "/var/lib/postgresql on db-01 fills within 24 h at the last hour's rate",
          [("pending", now - 3 * H - 10 * M), ("firing", now - 2 * H - 40 * M)],
          -2.1e10)  # fmt: skip
    alert(cache, "HighMemoryUsage", "high", {}, "memory_used_percent > 90",
          "memory 93% used on cache-01",
          [("pending", now - 16 * M), ("inactive", now - 14 * M)], 93.0)  # fmt: skip
    nginx = "/var/log/nginx/error.log"
    for ago, upstream in (
        (7 * H + 12 * M, "10.0.1.21"),
        (7 * H + 11 * M, "10.0.1.21"),
        (95 * M, "10.0.1.22"),
    ):
        log(web1, now - ago, nginx, "nginx_upstream", "medium",
            f"[error] 811#811: upstream timed out (110: Connection timed out), "
            f"upstream: \"http://{upstream}:8080/cart\"")  # fmt: skip
    for ago in (19 * M, 12 * M, 4 * M):
        log(web2, now - ago, "/var/log/api/app.log", "database_connection_failed", "critical",
            "ERROR api.db: Failed to connect to PostgreSQL at 10.0.2.11:5432: "
            "connection refused (pool exhausted after 30 s)")  # fmt: skip
    log(db, now - 2 * H - 5 * M, "/var/log/postgresql/postgresql-16-main.log", "pg_fatal", "high",
        "FATAL:  remaining connection slots are reserved for roles with the SUPERUSER"
        " attribute")  # fmt: skip
    log(cache, now - 11 * M, "/var/log/kern.log", "oom_killer", "critical",
        "kernel: Out of memory: Killed process 2231 (redis-server) total-vm:15728640kB, "
        "anon-rss:14680064kB, oom_score_adj:0")  # fmt: skip
    for h, ago, remote, n, users in (
        (fra, 5 * H + 3 * M, "203.0.113.45", 12, ["root", "admin"]),
        (fra, 47 * M, "198.51.100.77", 10, ["ubuntu", "test", "oracle"]),
        (by["edge-nyc-1"], 3 * H + 30 * M, "192.0.2.200", 15, ["root"]),
    ):
        message = (f"brute force: {n} failed logins from {remote} in 60s "
                   f"(users: {', '.join(users)})")  # fmt: skip
        fields = {"detector": "auth", "remote": remote, "count": n, "window": 60.0, "users": users}
        h.events.append(event("security", now - ago, message, "high", fields))


def noise(host: str, ts: float, what: str) -> float:
    """A repeatable number in [0, 1) for a host, a time and a quantity."""
    digest = hashlib.blake2b(f"{host}|{int(ts // STEP)}|{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def day(host: Host, ts: float) -> float:
    """0 at 04:00 local time, 1 at 16:00."""
    hour = ((ts / 3600.0) + host.tz) % 24
    return 0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4) / 24)


def cpu(host: Host, ts: float) -> float:
    for start, end, level in host.spikes:
        if start <= ts < end:
            return min(100.0, level + 3 * (noise(host.name, ts, "spike") - 0.5))
    value = host.cpu_base + (host.cpu_peak - host.cpu_base) * day(host, ts)
    return max(0.5, min(100.0, value * (0.8 + 0.4 * noise(host.name, ts, "cpu"))))


def metrics(host: Host, ts: float, start: float, now: float) -> list[dict]:
    """One collection cycle of `host` at `ts`, the agent's names and labels."""
    n = host.name
    share = max(0.0, min(1.0, (ts - start) / (now - start)))
    out: list[dict] = []

    def g(
        name: str, value: float, labels: dict[str, str] | None = None, kind: str = "gauge"
    ) -> None:
        out.append({"kind": "metric", "name": name, "labels": labels or {}, "value": value,
                    "type": kind, "ts": ts})  # fmt: skip

    used = cpu(host, ts)
    iowait = min(used * 0.1, 5.0) * noise(n, ts, "iowait")
    system = used * 0.22
    g("cpus_online", host.cpus)
    g("cpu_usage_percent", used, {"cpu": "all"})
    modes = {"user": used - system - iowait, "nice": 0.0, "system": system, "idle": 100 - used,
             "iowait": iowait, "irq": 0.0, "softirq": used * 0.02, "steal": 0.0}  # fmt: skip
    for mode, value in modes.items():
        g("cpu_mode_percent", max(0.0, value), {"cpu": "all", "mode": mode})
    load1 = host.cpus * used / 100 * (0.7 + 0.6 * noise(n, ts, "load1"))
    load5 = host.cpus * used / 100 * (0.85 + 0.3 * noise(n, ts, "load5"))
    load15 = host.cpus * cpu(host, ts - 600) / 100
    for period, value in (("1m", load1), ("5m", load5), ("15m", load15)):
        g("load_average", round(value, 2), {"period": period})
        g("load_average_per_cpu", round(value / host.cpus, 3), {"period": period})
    then, later = host.memory
    percent = then + (later - then) * share + 0.8 * (noise(n, ts, "mem") - 0.5)
    total = host.memory_total
    used_bytes = total * percent / 100
    cached = (total - used_bytes) * 0.7
    g("memory_total_bytes", total)
    g("memory_available_bytes", total - used_bytes)
    g("memory_used_bytes", used_bytes)
    g("memory_free_bytes", (total - used_bytes) * 0.25)
    g("memory_cached_bytes", cached)
    g("memory_buffers_bytes", (total - used_bytes) * 0.05)
    g("memory_used_percent", percent)
    g("swap_total_bytes", 2 * GiB)
    g("swap_used_bytes", 0.0)
    g("swap_free_bytes", 2 * GiB)
    g("swap_used_percent", 0.0)
    for mount, device, fstype, size_gib, first, last in host.disks:
        labels = {"mount": mount, "device": device, "fstype": fstype}
        size = size_gib * GiB
        full = first + (last - first) * share + 0.02 * noise(n, ts, mount)
        g("disk_total_bytes", size, labels)
        g("disk_used_bytes", size * full / 100, labels)
        g("disk_free_bytes", size * (1 - full / 100), labels)
        g("disk_used_percent", full, labels)
        g("disk_inodes", size_gib * 65536, labels)
        g("disk_inodes_free", size_gib * 65536 * 0.9, labels)
        g("disk_inodes_used_percent", 10.0, labels)
        dev = {"device": device.removeprefix("/dev/")}
        busy = used / 100 * (0.5 + noise(n, ts, "io" + mount))
        g("disk_reads_per_second", 40 * busy, dev)
        g("disk_writes_per_second", 120 * busy, dev)
        g("disk_read_bytes_per_second", 2e6 * busy, dev)
        g("disk_written_bytes_per_second", 6e6 * busy, dev)
        g("disk_busy_percent", 100 * busy * 0.3, dev)
        g("disk_written_bytes_total", 6e6 * 0.5 * (ts - host.boot), dev, "counter")
    rx = host.net_peak * (0.15 + 0.85 * day(host, ts)) * (0.85 + 0.3 * noise(n, ts, "rx"))
    tx = rx * (0.35 if n.startswith("db") else 1.6) * (0.9 + 0.2 * noise(n, ts, "tx"))
    nic = {"device": "ens5" if n.startswith("edge") else "eth0"}
    g("network_receive_bytes_per_second", rx, nic)
    g("network_transmit_bytes_per_second", tx, nic)
    g("network_receive_packets_per_second", rx / 900, nic)
    g("network_transmit_packets_per_second", tx / 1100, nic)
    g("network_receive_errors_per_second", 0.0, nic)
    g("network_transmit_errors_per_second", 0.0, nic)
    g("network_receive_bytes_total", host.net_peak * 0.5 * (ts - host.boot), nic, "counter")
    g("network_transmit_bytes_total", host.net_peak * 0.6 * (ts - host.boot), nic, "counter")
    g("system_uptime_seconds", ts - host.boot)
    g("system_boot_time_seconds", host.boot)
    g("system_processes", 140 + 40 * noise(n, ts, "procs"))
    return out


def check_records(host: Host, ts: float, runs: dict[str, list[int]]) -> list[dict]:
    """Each check's run at `ts`: its record, metrics and any transition event."""
    out: list[dict] = []
    for name, kind, _target in host.checks:
        failing = any(c == name and lo <= ts < hi for c, lo, hi in host.failing)
        labels = {"check": name, "type": kind}
        latency = 0.004 if kind == "tcp" else 0.09 + 0.12 * noise(host.name, ts, name)
        fields: dict[str, Any] = {}
        message = ""
        code: int | None = None
        if kind == "http":
            code = 503 if failing else 200
            fields["status_code"] = code
            message = "status 503, expected 200" if failing else ""
            latency = 0.031 if failing else latency
        status = "critical" if failing else "ok"
        count = runs.setdefault(name, [0, 0, 1])  # runs, failures, last ok
        count[0] += 1
        count[1] += failing
        out.append({"kind": "check", "name": name, "type": kind, "ok": not failing,
                    "status": status, "latency": latency, "message": message,
                    "attempts": [{"status": status, "message": message, "latency": latency}],
                    "labels": labels, "fields": fields, "ts": ts})  # fmt: skip

        def m(metric: str, value: float, kind_: str = "gauge", at: dict = labels) -> None:
            out.append({"kind": "metric", "name": metric, "labels": at, "value": value,
                        "type": kind_, "ts": ts})  # fmt: skip

        m("check_up", 0.0 if failing else 1.0)
        m("check_status", 2.0 if failing else 0.0)
        m("check_duration_seconds", latency)
        m("check_attempts", 1.0)
        if code is not None:
            m("check_status_code", float(code))
        if kind == "tls":
            m("check_certificate_expiry_seconds", 41 * 86400.0 - (ts % 86400))
        m("check_runs_total", float(count[0]), "counter")
        m("check_failures_total", float(count[1]), "counter")
        if bool(count[2]) == failing:  # a transition
            tfields = {"check": name, "type": kind, "status": status, "error": message}
            if failing:
                text, sev = f"check {name} failed: {message}", "high"
                tfields["transition"] = "failed"
            else:
                text, sev = f"check {name} recovered after 4m", "info"
                tfields |= {"transition": "recovered", "down_seconds": 240.0}
            out.append(event("check", ts, text, sev, tfields))
        count[2] = 0 if failing else 1
    return out


class Filler:
    """Sends each host's records to the hub, as its agent would."""

    def __init__(self, url: str, secret: bytes, hosts: list[Host], start: float, now: float):
        self.url, self.secret, self.hosts, self.start, self.now = url, secret, hosts, start, now
        self.runs: dict[str, dict[str, list[int]]] = {h.name: {} for h in hosts}

    def cycle(self, host: Host, ts: float, upto: float) -> list[dict]:
        """One step's records; events stamped in (ts - STEP, upto] go with it."""
        records = metrics(host, ts, self.start, self.now)
        records += check_records(host, ts, self.runs[host.name])
        records += [e for e in host.events if ts - STEP < e["ts"] <= upto]
        return records

    def send(self, host: Host, records: list[dict]) -> None:
        body = protocol.encode_batch(host.name, host.stream, host.seq, records, VERSION,
                                     time.time(), STEP)  # fmt: skip
        request = urllib.request.Request(
            self.url + "/v1/ingest",
            data=protocol.compress(body),
            headers={
                "Authorization": f"Bearer {host_token(host.name, self.secret)}",
                "Content-Encoding": "zstd",
            },
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()
        host.seq += len(records)

    def history(self, host: Host) -> int:
        """26 hours up to now (or until the host stopped), an hour a batch."""
        end = host.stopped or self.now
        ts, batch, sent = self.start, [], 0
        while ts <= end:
            batch += self.cycle(host, ts, min(ts, end))
            ts += STEP
            if len(batch) >= 60 * 80:
                self.send(host, batch)
                sent, batch = sent + len(batch), []
        if batch:
            self.send(host, batch)
            sent += len(batch)
        return sent

    def live(self, stop: threading.Event) -> None:
        """The hosts still running: a batch every 10 s while the pages are taken."""
        last = {h.name: self.now for h in self.hosts}
        while not stop.wait(10.0):
            for host in self.hosts:
                if host.stopped is None:
                    ts = time.time()
                    records = metrics(host, ts, self.start, self.now)
                    if ts - last[host.name] >= STEP:  # checks run every minute
                        records += check_records(host, ts, self.runs[host.name])
                        last[host.name] = ts
                    self.send(host, records)


def start_hub(data: Path, port: int, extra: str = "") -> tuple[subprocess.Popen[bytes], str]:
    config = data / "hub.toml"
    config.write_text(
        f'[hub]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{data}"\n'
        f'silent_after = "{SILENT_AFTER:g}s"\nretention_raw = "30d"\n{extra}'
    )
    log = (data / "hub.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def wait(what: str, timeout: float, ok: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return str(resp.read().decode())


def shoot(page: Any, path: Path, full: bool) -> int:
    """The page at 1280x800 (its top, if too big), or whole if asked and small enough."""
    if full:
        page.screenshot(path=str(path), full_page=True)
        if path.stat().st_size <= MAX_BYTES:
            return path.stat().st_size
    height = VIEWPORT["height"]
    while True:  # the top of the viewport, shorter until it is small enough
        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1280, "height": height})
        if path.stat().st_size <= MAX_BYTES or height <= 400:
            return path.stat().st_size
        height -= 80


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    parser.add_argument("--keep", action="store_true", help="keep the hub's data directory")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data = Path(tempfile.mkdtemp(prefix="vigil-screenshots-"))
    data.chmod(0o750)
    port = free_port()
    hub, url = start_hub(data, port)
    stop = threading.Event()
    try:
        now = time.time()
        hosts = fleet(now)
        secret = (data / "hub.secret").read_bytes().strip()
        filler = Filler(url, secret, hosts, now - HOURS * H, now)
        began = time.monotonic()
        # cache-01 first, so it is the one that has been silent longest
        total = sum(filler.history(h) for h in sorted(hosts, key=lambda h: h.stopped is None))
        print(f"sent {total} records of {len(hosts)} hosts in {time.monotonic() - began:.0f} s")
        pinger = threading.Thread(target=filler.live, args=(stop,), daemon=True)
        pinger.start()
        wait("HostSilent on cache-01", 120, lambda: "HostSilent" in text(url + "/alerts"))
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            for name, path, full in (
                ("fleet", "/", True),
                ("host", "/hosts/db-01?range=24h", True),
                ("alerts", "/alerts", False),
                ("checks", "/checks", True),
                ("events", "/events?kind=log", True),  # unfiltered: mostly check runs
            ):
                page.goto(url + path)
                size = shoot(page, out / f"hub-{name}.png", full)
                print(f"hub-{name}.png {size / 1000:.0f} kB")
            context.close()
            stop.set()
            pinger.join(30)
            hub.terminate()
            hub.wait(30)
            token = data / "read.token"
            token.write_text(secrets.token_urlsafe(24) + "\n")
            hub, url = start_hub(data, port, f'read_token_file = "{token}"\n')
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.goto(url + "/hosts/db-01")
            size = shoot(page, out / "hub-login.png", False)
            print(f"hub-login.png {size / 1000:.0f} kB")
            context.close()
            browser.close()
    finally:
        stop.set()
        hub.terminate()
        hub.wait(30)
        if args.keep:
            print(f"the hub's data: {data}")
        else:
            subprocess.run(["rm", "-rf", str(data)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
