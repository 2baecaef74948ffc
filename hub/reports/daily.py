"""The daily report, built from a store reader (docs/hub.md, "Reports",
defines every figure).

The issue's JSON shape is fixed: `date`, `hosts`, `checks`, `incidents`,
`security.failed_logins`, `capacity`, each item with its keys. Added
beside them, never renamed: `timezone`, `start`, `end`, `headline`,
`mttr`, `log_errors` (`top`, `new`), `security.brute_force`, and a few
keys inside items (`summary`, `runs`, `free_bytes`, ...).

Sources, all through `Reader` (one read thread, one snapshot per query):
- hosts: the host registry (first_seen, retired; a host first seen after
  midnight counts from its first record of the day, if earlier, to 5
  minutes: a backlog delivered late is the host's past) and HostSilent's alert
  events (hub/liveness.py): a silence runs from the host's last batch
  before it (the firing event's `since`) to its first batch after (the
  resolution's `since`), or on to now while it fires;
- checks: hub/sla.py;
- incidents and MTTR: the alert events (agents' and the hub's), each
  alert instance (host, fingerprint) paired firing -> resolved;
- log errors: the day's log events grouped by signature (`signature`);
- security: the rollups of the agents' `auth_failures_total{remote}`
  counter, and the auth detector's brute-force events;
- capacity: a least-squares line through the newest point of each
  5-minute rollup of `disk_free_bytes` over the last CAPACITY_DAYS.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from hub import sla
from hub.reports.days import bounds, zone_name
from hub.store import Reader

HOST_SILENT = "HostSilent"  # hub/liveness.py's alert
LOOKBACK = 30 * 86400.0  # alert events read before the day: incidents open at midnight
NEW_SIGNATURE_DAYS = 7
CAPACITY_DAYS = 7
TOP = 10  # log error signatures listed
MAX_NEW = 20  # new signatures listed
EXAMPLE_CHARS = 300
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}

# Variable parts of a log line, masked in this order (a uuid holds hex and
# digits, an address and a time of day digits): what is left is the line's
# signature.
_MASKS = (
    (
        re.compile(
            r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"), "<ip>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"), "<ip>"),
    (re.compile(r"\b0[xX][0-9A-Fa-f]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9A-Fa-f]*\d)(?=[0-9A-Fa-f]*[A-Fa-f])[0-9A-Fa-f]{6,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)
_SPACE = re.compile(r"\s+")


def signature(line: str) -> str:
    """A log line with its variable parts masked: digits, hex, uuids, IPs."""
    text = line[:1000]
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return _SPACE.sub(" ", text).strip()[:500]


def daily(
    reader: Reader,
    day: dt.date,
    tz: dt.tzinfo,
    target: float = sla.DEFAULT_TARGET,
    now: float | None = None,
) -> dict[str, Any]:
    """The report of `day` (local midnight to midnight in `tz`) as a dict in
    the issue's JSON shape. `target`: checks without their own. `now`: the
    report's clock (a day in progress ends there)."""
    start, end = bounds(day, tz)
    now = time.time() if now is None else now
    alert_events = list(reader.events_between("alert", start - LOOKBACK, math.inf))
    hosts = _hosts(reader, alert_events, start, end, now)
    checks = [c.to_dict() for c in sla.checks(reader, start, end, target)]
    incidents = _incidents(alert_events, start, end)
    report: dict[str, Any] = {
        "date": day.isoformat(),
        "timezone": zone_name(tz),
        "start": start,
        "end": end,
        "hosts": hosts,
        "checks": checks,
        "incidents": incidents,
        "mttr": _mttr(incidents, start, end),
        "log_errors": _log_errors(reader, start, end),
        "security": {
            "failed_logins": _failed_logins(reader, start, end),
            "brute_force": _brute_force(reader, start, end),
        },
        "capacity": _capacity(reader, end),
    }
    report["headline"] = headline(report)
    return report


def headline(report: dict[str, Any]) -> str:
    """One line: what an operator reads first."""
    hosts = report["hosts"]
    silent = sum(1 for h in hosts if h["silent_minutes"] > 0)
    below = sum(
        1
        for c in report["checks"]
        if c["availability"] is not None and c["availability"] < c["target"]
    )
    parts = [
        f"{len(hosts)} host{'s' * (len(hosts) != 1)}"
        + (f" ({silent} silent at times)" if silent else ""),
        f"{len(report['incidents'])} incident{'s' * (len(report['incidents']) != 1)}",
        f"{below} check{'s' * (below != 1)} below target",
        f"{len(report['capacity'])} file system{'s' * (len(report['capacity']) != 1)}"
        f" filling within {CAPACITY_DAYS} days",
    ]
    return f"vigil daily report {report['date']}: " + ", ".join(parts)


# -- hosts ---------------------------------------------------------------------------


def _silences(
    alert_events: Iterable[tuple[str, float, dict[str, Any]]], now: float
) -> dict[str, list[tuple[float, float]]]:
    """host -> its silences [from, to) from HostSilent's history."""
    out: dict[str, list[tuple[float, float]]] = {}
    open_: dict[str, float] = {}
    for host, _, record in alert_events:
        fields = record.get("fields")
        if not isinstance(fields, dict) or fields.get("rule") != HOST_SILENT:
            continue
        if fields.get("source") != "hub":
            continue  # only the hub raises HostSilent; an agent rule of that name is not it
        since = fields.get("since")
        if not isinstance(since, (int, float)) or not math.isfinite(since):
            continue
        if fields.get("state") == "firing" and host not in open_:
            open_[host] = float(since)
        elif fields.get("state") == "resolved" and host in open_:
            out.setdefault(host, []).append((open_.pop(host), float(since)))
    for host, since in open_.items():
        out.setdefault(host, []).append((since, now))
    return out


def _hosts(
    reader: Reader,
    alert_events: list[tuple[str, float, dict[str, Any]]],
    start: float,
    end: float,
    now: float,
) -> list[dict[str, Any]]:
    silences = _silences(alert_events, now)
    until = min(end, now)
    out = []
    for h in reader.hosts():
        if h["retired"]:
            continue
        first = h["first_seen"]
        if first > start:  # new that day, or fed its past (an agent's backlog): its first record
            early = reader.first_record(h["id"], start, end)
            first = min(first, early) if early is not None else first
        if first >= end:
            continue
        begin = max(start, first)
        known = max(0.0, until - begin)
        silent = 0.0
        for a, b in silences.get(h["id"], []):
            silent += max(0.0, min(b, until) - max(a, begin))
        silent = min(silent, known)
        out.append(
            {
                "host": h["id"],
                "up_minutes": round((known - silent) / 60, 1),
                "silent_minutes": round(silent / 60, 1),
            }
        )
    return out


# -- incidents -----------------------------------------------------------------------


def _incidents(
    alert_events: list[tuple[str, float, dict[str, Any]]], start: float, end: float
) -> list[dict[str, Any]]:
    """Every alert instance firing at some time of [start, end): started
    when it fired, ended when it resolved (null: still firing)."""
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for host, ts, record in alert_events:
        fields = record.get("fields")
        if not isinstance(fields, dict):
            continue
        fingerprint = fields.get("fingerprint")
        state = fields.get("state")
        if not isinstance(fingerprint, str):
            continue
        key = (host, fingerprint)
        if state == "firing" and key not in open_:
            open_[key] = {
                "host": host,
                "alert": str(fields.get("rule", "?"))[:200],
                "severity": str(record.get("severity", "?"))[:20],
                "started": ts,
                "ended": None,
                "duration_seconds": None,
                "summary": str(record.get("message", ""))[:500],
            }
        elif state == "resolved" and key in open_:
            incident = open_.pop(key)
            incident["ended"] = ts
            incident["duration_seconds"] = round(ts - incident["started"], 3)
            done.append(incident)
    done.extend(open_.values())
    day = [i for i in done if i["started"] < end and (i["ended"] is None or i["ended"] >= start)]
    return sorted(day, key=lambda i: (i["started"], i["host"], i["alert"]))


def _mttr(incidents: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """Mean time to resolve, per severity, of the incidents that ended in the day."""
    by: dict[str, list[float]] = {}
    for i in incidents:
        if i["ended"] is not None and start <= i["ended"] < end:
            by.setdefault(i["severity"], []).append(i["duration_seconds"])
    return [
        {"severity": s, "incidents": len(d), "mttr_seconds": round(sum(d) / len(d), 3)}
        for s, d in sorted(by.items(), key=lambda kv: (SEVERITY_RANK.get(kv[0], 9), kv[0]))
    ]


# -- log errors ----------------------------------------------------------------------


def _lines(reader: Reader, start: float, end: float) -> Iterator[tuple[str, str, str]]:
    """(host, line, severity) of the log events in [start, end)."""
    for host, _, record in reader.events_between("log", start, end):
        message = record.get("message")
        if isinstance(message, str):
            yield host, message, str(record.get("severity", ""))[:20]


def _log_errors(reader: Reader, start: float, end: float) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for host, line, severity in _lines(reader, start, end):
        sig = signature(line)
        g = groups.get(sig)
        if g is None:
            g = groups[sig] = {
                "signature": sig,
                "count": 0,
                "hosts": set(),
                "severity": severity,
                "example": line[:EXAMPLE_CHARS],
            }
        g["count"] += 1
        g["hosts"].add(host)
        if SEVERITY_RANK.get(severity, 9) < SEVERITY_RANK.get(g["severity"], 9):
            g["severity"] = severity
    seen: set[str] = set()
    if groups:
        before = start - NEW_SIGNATURE_DAYS * 86400
        seen = {
            s for _, line, _ in _lines(reader, before, start) if (s := signature(line)) in groups
        }
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], g["signature"]))
    items = [{**g, "hosts": sorted(g["hosts"])[:20], "host_count": len(g["hosts"])} for g in ranked]
    return {
        "top": items[:TOP],
        "new": [g for g in items if g["signature"] not in seen][:MAX_NEW],
        "signatures": len(items),
    }


# -- security ------------------------------------------------------------------------


def _failed_logins(reader: Reader, start: float, end: float) -> list[dict[str, Any]]:
    """Failed logins per remote address in [start, end), across the fleet:
    the increase of each host's `auth_failures_total{remote}` counter (a
    drop is a reset: the value after it counts whole), from the newest
    point of each 5-minute rollup; the baseline is the series' last point
    before the day (none in the day before: a new series, from 0)."""
    counts: dict[str, float] = {}
    hosts: dict[str, set[str]] = {}
    key: tuple[str, str] | None = None
    prev: float | None = None
    remote = ""
    for host, labels_json, ts, value in reader.rollup_lasts(
        "auth_failures_total", start - 86400, end
    ):
        if (host, labels_json) != key:
            key, prev = (host, labels_json), None
            try:
                labels = json.loads(labels_json)
            except ValueError:
                labels = {}
            remote = str(labels.get("remote", "")) if isinstance(labels, dict) else ""
        if ts < start:
            prev = value
            continue
        increase = value - prev if prev is not None and value >= prev else value
        prev = value
        if increase > 0:
            counts[remote] = counts.get(remote, 0.0) + increase
            hosts.setdefault(remote, set()).add(host)
    return [
        {"remote": r, "count": int(n) if float(n).is_integer() else n, "hosts": sorted(hosts[r])}
        for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def _brute_force(reader: Reader, start: float, end: float) -> list[dict[str, Any]]:
    out = []
    for host, ts, record in reader.events_between("security", start, end):
        fields = record.get("fields")
        if not isinstance(fields, dict) or fields.get("detector") != "auth":
            continue
        out.append(
            {
                "host": host,
                "ts": ts,
                "remote": str(fields.get("remote", ""))[:200],
                "count": fields.get("count"),
                "message": str(record.get("message", ""))[:500],
            }
        )
    return out


# -- capacity ------------------------------------------------------------------------


def _fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares: (slope per second, value at the mean time), or None."""
    n = len(points)
    if n < 2:
        return None
    t0 = sum(t for t, _ in points) / n
    v0 = sum(v for _, v in points) / n
    var = sum((t - t0) ** 2 for t, _ in points)
    if var <= 0:
        return None
    slope = sum((t - t0) * (v - v0) for t, v in points) / var
    if not math.isfinite(slope):
        return None
    return slope, v0 - slope * t0  # intercept at t = 0


def _capacity(reader: Reader, end: float) -> list[dict[str, Any]]:
    """File systems whose free space, on the least-squares line through
    the last CAPACITY_DAYS, reaches zero within CAPACITY_DAYS of `end`."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for host, labels_json, ts, value in reader.rollup_lasts(
        "disk_free_bytes", end - CAPACITY_DAYS * 86400, end
    ):
        series.setdefault((host, labels_json), []).append((ts, value))
    out = []
    for (host, labels_json), points in series.items():
        if len(points) < 3 or points[-1][0] - points[0][0] < 3600:
            continue  # too little to draw a line through
        fit = _fit(points)
        if fit is None or fit[0] >= 0:
            continue
        slope, intercept = fit
        full_at = -intercept / slope
        days = max(0.0, (full_at - end) / 86400)
        if days > CAPACITY_DAYS or not math.isfinite(days):
            continue
        try:
            labels = json.loads(labels_json)
        except ValueError:
            labels = {}
        mount = str(labels.get("mount", "")) if isinstance(labels, dict) else ""
        out.append(
            {
                "host": host,
                "mount": mount,
                "days_to_full": round(days, 2),
                "free_bytes": points[-1][1],
                "fill_rate_bytes_per_day": round(-slope * 86400, 1),
            }
        )
    return sorted(out, key=lambda c: (c["days_to_full"], c["host"], c["mount"]))
