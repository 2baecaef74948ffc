"""A recorded day for the daily report: 2026-03-10 (UTC) of a small fleet,
as agents send it, with known outages, check failures, alerts, failed
logins and a disk filling at a known rate; and the report it must give,
figure by figure (docs/hub.md, "Reports", defines them).

The fleet:
- web-01: HostSilent from 10:00:00 to 10:45:00 (its last batch before,
  its first after); check "api": 100 runs that day, run 37 fails (0.99),
  passing latencies 0.001 .. 0.099 s (p95 by nearest rank: 0.095); 900
  passing runs in the 29 days before, so 999 / 1000 over 30 days: the
  0.999 target exactly, budget left 0; HighCPU (high) 09:00 -> 09:30;
  failed logins from 203.0.113.9: counter 10 the day before, 40 by noon;
  a brute-force finding at 12:00; three "db timeout" log lines that
  differ only in numbers and addresses (also seen the day before);
- db-01: check "pg" (label availability_target = "0.995"): 50 passing runs
  at 0.2 s; DiskFull (critical) from 23:00 the day before to 01:00;
  Replication (medium) fires at 22:00 and is still firing; failed logins:
  203.0.113.9 a new series (5), 198.51.100.7 with a counter reset (10);
  one "panic" log line with a uuid (a new signature);
- new-01: first record at 18:00 (up 360 min); /data's free space falls
  1 GiB an hour to 60 GiB at midnight: full in 2.5 days; a NaN among its
  points; an alert the day after (not in the report);
- ü<i>&x: a host name with markup, first record at 12:00; log lines with
  HTML and non-ASCII text; a failed login from a "remote" that is a
  script tag; a record stamped in 2100 (clamped to the time it arrives:
  never in this day);
- gone-01: seen the day before, retired: not in the report.
"""

from __future__ import annotations

import math
from typing import Any

DATE = "2026-03-10"
DAY = 1773100800.0  # 2026-03-10T00:00:00Z
END = DAY + 86400
H = 3600.0
GIB = float(2**30)
HOSTILE = "ü<i>&x"
SCRIPT = "<script>alert('x')</script>"


def _check(
    host_check: str, ts: float, ok: bool, latency: float, **labels: str
) -> list[dict[str, Any]]:
    tags = {**labels, "check": host_check, "type": "http"}
    return [
        {"kind": "check", "name": host_check, "type": "http", "ok": ok,
         "status": "ok" if ok else "critical", "latency": latency,
         "message": "" if ok else "HTTP 503 <b>down</b>", "attempts": [],
         "labels": tags, "fields": {}, "ts": ts},
        {"kind": "metric", "name": "check_up", "labels": tags, "value": float(ok), "ts": ts},
    ]  # fmt: skip


def _metric(name: str, value: float, ts: float, **labels: str) -> dict[str, Any]:
    return {"kind": "metric", "name": name, "labels": labels, "value": value, "ts": ts}


def _event(kind: str, ts: float, message: str, severity: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "event", "type": kind, "ts": ts, "message": message,
            "severity": severity, "fields": fields}  # fmt: skip


def _alert(ts: float, rule: str, state: str, severity: str, since: float) -> dict[str, Any]:
    return _event("alert", ts, f"{rule} {state}: it happened", severity, rule=rule, state=state,
                  labels={"alertname": rule}, value=1.0, fingerprint=f"fp-{rule}",
                  expr="x > 1", since=since)  # fmt: skip


def records() -> dict[str, list[dict[str, Any]]]:
    """Each host's records, oldest first (the 2100 one last)."""
    web: list[dict[str, Any]] = []
    for i in range(900):  # the 29 days before: all passing
        web += _check("api", DAY - 29 * 86400 + i * 2700, True, 0.5)
    web.append(_metric("auth_failures_total", 10.0, DAY - 300, remote="203.0.113.9"))
    web.append(_event("log", DAY - 7200, "ERROR db timeout after 100 ms on 10.0.0.9:5432", "high",
                      file="/var/log/app.log"))  # fmt: skip
    ok_rank = 0
    for i in range(100):
        ts = DAY + i * 864
        if i == 37:
            web += _check("api", ts, False, 10.0)
        else:
            ok_rank += 1
            web += _check("api", ts, True, ok_rank / 1000)
    web.append(_alert(DAY + 9 * H, "HighCPU", "pending", "high", DAY + 9 * H - 300))
    web.append(_alert(DAY + 9 * H, "HighCPU", "firing", "high", DAY + 9 * H - 300))
    web.append(_alert(DAY + 9.5 * H, "HighCPU", "resolved", "high", DAY + 9 * H - 300))
    for hour, value in ((1, 15.0), (6, 25.0), (12, 40.0), (18, 40.0)):
        web.append(_metric("auth_failures_total", value, DAY + hour * H, remote="203.0.113.9"))
    brute = "brute force: 10 failed logins from 203.0.113.9 in 300s"
    web.append(_event("security", DAY + 12 * H, brute, "high", detector="auth",
                      remote="203.0.113.9", count=10, window=300.0, users=["root"]))  # fmt: skip
    for ts, ms, ip in ((DAY + 2 * H, 5000, "10.0.0.5"), (DAY + 3 * H, 300, "10.0.0.6:5432"),
                       (DAY + 4 * H, 12, "10.0.0.5")):  # fmt: skip
        web.append(_event("log", ts, f"ERROR db timeout after {ms} ms on {ip}", "high",
                          file="/var/log/app.log"))  # fmt: skip
    for k, ts in enumerate((DAY - 86400, DAY, DAY + 86400 - 600)):  # /var: full in ~300 days
        web.append(_metric("disk_free_bytes", (30 - k / 10) * GIB, ts, mount="/var", device="sda2"))
    web.sort(key=lambda r: r["ts"])

    db: list[dict[str, Any]] = [
        _alert(DAY - 1 * H, "DiskFull", "firing", "critical", DAY - 1 * H),
    ]
    for i in range(50):
        db += _check("pg", DAY + i * 1000, True, 0.2, availability_target="0.995")
    db.append(_alert(DAY + 1 * H, "DiskFull", "resolved", "critical", DAY - 1 * H))
    for hour, value in ((3, 5.0), (4, 5.0)):
        db.append(_metric("auth_failures_total", value, DAY + hour * H, remote="203.0.113.9"))
    for hour, value in ((5, 3.0), (6, 6.0), (7, 1.0), (8, 4.0)):
        db.append(_metric("auth_failures_total", value, DAY + hour * H, remote="198.51.100.7"))
    panic = "panic: request 123e4567-e89b-12d3-a456-426614174000 failed"
    db.append(_event("log", DAY + 5 * H, panic, "critical", file="/var/log/db.log"))
    for i in range(288):  # "/": flat
        db.append(_metric("disk_free_bytes", 50 * GIB, DAY + i * 300, mount="/", device="sda1"))
    db.append(_alert(DAY + 22 * H, "Replication", "firing", "medium", DAY + 22 * H))
    db.sort(key=lambda r: r["ts"])

    new: list[dict[str, Any]] = []
    for i in range(72):  # 18:00 .. 23:55, 1 GiB an hour less, 60 GiB at midnight
        ts = DAY + 18 * H + i * 300
        new.append(_metric("disk_free_bytes", 60 * GIB + (END - ts) / H * GIB, ts,
                           mount="/data", device="sdb1"))  # fmt: skip
        if i == 30:
            new.append(_metric("disk_free_bytes", math.nan, ts + 1, mount="/data", device="sdb1"))
    new.append(_alert(END + 100, "Tomorrow", "firing", "low", END + 100))

    hostile = [
        _event("log", DAY + 12 * H, f"{SCRIPT} failed for user ünïcode id 0xdeadbeef", "high",
               file="/var/log/<x>.log"),
        _event("log", DAY + 13 * H, f"{SCRIPT} failed for user ünïcode id 0xfeedface", "high",
               file="/var/log/<x>.log"),
        _metric("auth_failures_total", 2.0, DAY + 14 * H, remote=SCRIPT),
        _metric("disk_free_bytes", math.inf, DAY + 14 * H, mount="/", device="sda1"),
        _event("log", 4102444800.0, "from 2100", "high", file="/x"),  # clamped on arrival
    ]  # fmt: skip

    gone = [_metric("disk_free_bytes", 1.0, DAY - 86400, mount="/", device="sda1")]
    return {"web-01": web, "db-01": db, "new-01": new, HOSTILE: hostile, "gone-01": gone}


# HostSilent as the hub records it (hub/liveness.py through Store.hub_alert):
# (host, state, since = the host's last batch then, at = when the hub saw it)
SILENCES = [
    ("web-01", "firing", DAY + 10 * H, DAY + 10 * H + 60),
    ("web-01", "resolved", DAY + 10.75 * H, DAY + 10.75 * H + 30),
]


def expected() -> dict[str, Any]:
    """The report of DATE in UTC with the default target, as JSON."""
    return {
        "date": DATE,
        "timezone": "UTC",
        "start": DAY,
        "end": END,
        "hosts": [
            {"host": "db-01", "up_minutes": 1440.0, "silent_minutes": 0.0},
            {"host": "new-01", "up_minutes": 360.0, "silent_minutes": 0.0},
            {"host": "web-01", "up_minutes": 1395.0, "silent_minutes": 45.0},
            {"host": HOSTILE, "up_minutes": 720.0, "silent_minutes": 0.0},
        ],
        "checks": [
            {
                "host": "db-01",
                "check": "pg",
                "availability": 1.0,
                "target": 0.995,
                "error_budget_left": 1.0,
                "p95_latency_seconds": 0.2,
                "runs": 50,
                "passing": 50,
            },
            {
                "host": "web-01",
                "check": "api",
                "availability": 0.99,
                "target": 0.999,
                "error_budget_left": 0.0,
                "p95_latency_seconds": 0.095,
                "runs": 100,
                "passing": 99,
            },
        ],
        "incidents": [
            {
                "host": "db-01",
                "alert": "DiskFull",
                "severity": "critical",
                "started": DAY - H,
                "ended": DAY + H,
                "duration_seconds": 7200.0,
                "summary": "DiskFull firing: it happened",
            },
            {
                "host": "web-01",
                "alert": "HighCPU",
                "severity": "high",
                "started": DAY + 9 * H,
                "ended": DAY + 9.5 * H,
                "duration_seconds": 1800.0,
                "summary": "HighCPU firing: it happened",
            },
            {
                "host": "web-01",
                "alert": "HostSilent",
                "severity": "high",
                "started": DAY + 10 * H + 60,
                "ended": DAY + 10.75 * H + 30,
                "duration_seconds": 2670.0,
                "summary": "HostSilent firing: web-01 has sent nothing for 60 s",
            },
            {
                "host": "db-01",
                "alert": "Replication",
                "severity": "medium",
                "started": DAY + 22 * H,
                "ended": None,
                "duration_seconds": None,
                "summary": "Replication firing: it happened",
            },
        ],
        "mttr": [
            {"severity": "critical", "incidents": 1, "mttr_seconds": 7200.0},
            {"severity": "high", "incidents": 2, "mttr_seconds": 2235.0},
        ],
        "log_errors": {
            "top": [
                {
                    "signature": "ERROR db timeout after <n> ms on <ip>",
                    "count": 3,
                    "hosts": ["web-01"],
                    "host_count": 1,
                    "severity": "high",
                    "example": "ERROR db timeout after 5000 ms on 10.0.0.5",
                },
                {
                    "signature": f"{SCRIPT} failed for user ünïcode id <hex>",
                    "count": 2,
                    "hosts": [HOSTILE],
                    "host_count": 1,
                    "severity": "high",
                    "example": f"{SCRIPT} failed for user ünïcode id 0xdeadbeef",
                },
                {
                    "signature": "panic: request <uuid> failed",
                    "count": 1,
                    "hosts": ["db-01"],
                    "host_count": 1,
                    "severity": "critical",
                    "example": "panic: request 123e4567-e89b-12d3-a456-426614174000 failed",
                },
            ],
            "new": [
                {
                    "signature": f"{SCRIPT} failed for user ünïcode id <hex>",
                    "count": 2,
                    "hosts": [HOSTILE],
                    "host_count": 1,
                    "severity": "high",
                    "example": f"{SCRIPT} failed for user ünïcode id 0xdeadbeef",
                },
                {
                    "signature": "panic: request <uuid> failed",
                    "count": 1,
                    "hosts": ["db-01"],
                    "host_count": 1,
                    "severity": "critical",
                    "example": "panic: request 123e4567-e89b-12d3-a456-426614174000 failed",
                },
            ],
            "signatures": 3,
        },
        "security": {
            "failed_logins": [
                {"remote": "203.0.113.9", "count": 35, "hosts": ["db-01", "web-01"]},
                {"remote": "198.51.100.7", "count": 10, "hosts": ["db-01"]},
                {"remote": SCRIPT, "count": 2, "hosts": [HOSTILE]},
            ],
            "brute_force": [
                {
                    "host": "web-01",
                    "ts": DAY + 12 * H,
                    "remote": "203.0.113.9",
                    "count": 10,
                    "message": "brute force: 10 failed logins from 203.0.113.9 in 300s",
                },
            ],
        },
        "capacity": [
            {
                "host": "new-01",
                "mount": "/data",
                "days_to_full": 2.5,
                "free_bytes": 60 * GIB + 300 / H * GIB,
                "fill_rate_bytes_per_day": 24 * GIB,
            },
        ],
        "headline": "vigil daily report 2026-03-10: 4 hosts (1 silent at times), 4 incidents,"
        " 1 check below target, 1 file system filling within 7 days",
    }
