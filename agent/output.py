"""How `vigil once` and `vigil status` print: JSON lines for programs,
aligned tables with human units for people."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.core.records import Metric, Record


def json_lines(records: Iterable[Record]) -> str:
    return "".join(json.dumps(r.to_dict(), separators=(",", ":")) + "\n" for r in records)


def human(name: str, value: float) -> str:
    """A value as a person reads it, by the unit the metric name ends with."""
    if name.endswith("_bytes") or name.endswith("_bytes_total"):
        return _binary(value)
    if name.endswith("_bytes_per_second"):
        return _binary(value) + "/s"
    if name.endswith("_percent"):
        return f"{value:.1f} %"
    if name.endswith("timestamp_seconds") or (name.endswith("time_seconds") and value > 1e9):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    if name.endswith("_seconds") or name.endswith("_seconds_total"):
        return _duration(value)
    if name.endswith("_per_second"):
        return f"{value:,.1f}/s"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _binary(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return (f"{days}d " if days else "") + f"{hours}h {rest // 60}m"


def metrics_table(records: Iterable[Record]) -> str:
    rows: list[tuple[str, ...]] = []
    for r in records:
        if not isinstance(r, Metric):
            continue
        labels = ",".join(f"{k}={v}" for k, v in sorted(r.labels.items()))
        rows.append((r.name, labels, human(r.name, r.value)))
    return table(("METRIC", "LABELS", "VALUE"), rows, right=(2,))


def table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: tuple[int, ...] = ()
) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = []
    for row in (header, *rows):
        cells = [
            str(cell).rjust(w) if i in right else str(cell).ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def status_text(status: Mapping[str, Any]) -> str:
    head = (
        f"vigil agent {status['version']} on {status['host_id']} (pid {status['pid']})\n"
        f"up {_duration(status['uptime_seconds'])}, config {status['config']}, "
        f"state {status['state_dir']}, {status['errors']} collector errors\n\n"
    )
    now = time.time()
    rows: list[tuple[str, ...]] = []
    for c in status["collectors"]:
        ago = f"{now - c['last_run']:.0f}s ago" if c["last_run"] else "never"
        took = (
            _duration(c["last_duration_seconds"]) if c["last_duration_seconds"] is not None else "-"
        )
        state = "FAILING" if c["failing"] else "ok"
        rows.append(
            (
                c["name"],
                state,
                f"{c['interval_seconds']:g}s",
                ago,
                took,
                str(c["samples"]),
                str(c["errors"]),
                str(c["timeouts"]),
                str(c["overruns"]),
                c["last_error"] or "",
            )
        )
    header = (
        "COLLECTOR",
        "STATE",
        "EVERY",
        "LAST RUN",
        "TOOK",
        "SAMPLES",
        "ERRORS",
        "TIMEOUTS",
        "OVERRUNS",
        "LAST ERROR",
    )
    text = head + table(header, rows)
    ship = status.get("shipper")
    if ship:
        last = f"{now - ship['last_success']:.0f}s ago" if ship["last_success"] else "never"
        text += (
            f"\nhub {ship['hub']}: last success {last}, {ship['sent_records']} records sent, "
            f"{ship['retries']} retries, {ship['dead_letter_batches']} dead-lettered\n"
            f"buffer: {ship['buffer_records']} records waiting ({ship['buffer_bytes']} bytes), "
            f"lag {ship['lag_seconds']:.0f}s, {ship['dropped_records']} dropped\n"
        )
        if ship["last_error"]:
            text += f"last error: {ship['last_error']}\n"
    logs = status.get("logs")
    if logs:
        text += f"\nlogs: {len(logs['files'])} files, matcher {logs['engine']}"
        text += f", {logs['events_waiting']} events waiting to commit\n"
        if logs["commit_error"]:
            text += f"log commit error: {logs['commit_error']}\n"
        if logs.get("stalled"):
            text += f"log reader stalled on: {', '.join(logs['stalled'])}\n"
        for journal in logs.get("journals", []):
            text += f"{journal['table']}: cursor {journal['cursor'] or '(none yet)'}\n"
        text += table(
            ("FILE", "OFFSET", "SIZE", "ROTATED"),
            [
                (f["path"], str(f["offset"]), str(f["size"]), "yes" if f["rotated"] else "")
                for f in logs["files"]
            ],
        )
    alerts = status.get("alerts") or {}
    for rule, error in sorted((alerts.get("errors") or {}).items()):
        text += f"alert rule {rule}: no answer: {error}\n"
    checks = status.get("checks")
    if checks:
        text += f"\nchecks: {len(checks)}\n" + checks_text(checks)
    return text


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def checks_text(checks: Sequence[Mapping[str, Any]]) -> str:
    """Each check's last run and availability (`vigil status`, `vigil checks`)."""
    rows = []
    for c in checks:
        state = "-" if "status" not in c else c["status"].upper()
        if c.get("attempts", 1) > 1:
            state += f" ({c['attempts']} attempts)"
        latency = "" if c.get("latency") is None else f"{1000 * c['latency']:.0f} ms"
        avail = c.get("availability", {})
        rows.append(
            (
                c["name"],
                c["type"],
                state,
                latency,
                _percent(avail.get("1h")),
                _percent(avail.get("24h")),
                _percent(avail.get("30d")),
                (c.get("message") or "")[:60],
            )
        )
    return table(("CHECK", "TYPE", "STATE", "LATENCY", "1H", "24H", "30D", "MESSAGE"), rows)


def check_run_text(run: Mapping[str, Any]) -> str:
    """`vigil checks run NAME`: one run, every attempt, what it measured."""
    text = f"{run['name']} ({run['type']}): {run['status'].upper()}"
    text += f" in {1000 * run['latency']:.0f} ms"
    text += f"\n{run['message']}\n" if run["message"] else "\n"
    if len(run["attempts"]) > 1:
        for i, a in enumerate(run["attempts"], 1):
            text += f"  attempt {i}: {a['status']} in {1000 * a['latency']:.0f} ms {a['message']}\n"
    fields = run.get("fields", {})
    if "status_code" in fields:
        text += f"status code: {fields['status_code']}\n"
    if "certificate_expiry_days" in fields:
        cert = fields.get("certificate", {})
        text += f"certificate: {fields['certificate_expiry_days']:.1f} days left"
        if cert.get("not_after"):
            text += f" (until {cert['not_after']})"
        if cert.get("subject"):
            text += f", subject {cert['subject']}"
        if cert.get("issuer"):
            text += f", issuer {cert['issuer']}"
        text += "\n"
    for p in fields.get("perf", []):
        text += f"perfdata: {p['label']} = {p['value']:g} {p['unit']}".rstrip() + "\n"
    return text


def alerts_text(listing: Mapping[str, Any]) -> str:
    """`vigil alerts`: each rule, then its pending and firing instances."""
    now = time.time()
    rows: list[tuple[str, ...]] = []
    for rule in listing["rules"]:
        instances = rule["instances"] or [None]
        for inst in instances:
            if inst is None:
                rows.append((rule["name"], rule["severity"], "inactive", "", "", rule["expr"]))
                continue
            since = inst["fired_at"] if inst["state"] == "firing" else inst["since"]
            labels = ",".join(f"{k}={v}" for k, v in sorted(inst["labels"].items()))
            value = "" if inst["value"] is None else f"{inst['value']:g}"
            rows.append(
                (
                    rule["name"],
                    rule["severity"],
                    f"{inst['state'].upper()} {_duration(now - since)}",
                    labels,
                    value,
                    rule["expr"],
                )
            )
    text = table(("RULE", "SEVERITY", "STATE", "LABELS", "VALUE", "EXPR"), rows)
    for rule in listing["rules"]:
        if rule.get("error"):
            text += f"{rule['name']}: no answer: {rule['error']}\n"
    if listing.get("source"):
        text += f"({listing['source']})\n"
    return text


def alert_test_text(result: Mapping[str, Any]) -> str:
    """`vigil alerts test RULE`: the value of each series and the verdict."""
    lines = [
        f"{result['rule']}: {result['expr']}"
        + (f"  for {result['for']:g}s" if result["for"] else "")
    ]
    if result.get("read_as") and result["read_as"] != result["expr"]:
        lines.append(f"  read as: {result['read_as']}")
    if not result["series"] and result.get("read_as"):
        lines.append("  no series in the result: the condition holds for none")
    elif not result["series"]:
        lines.append("  no matching series: no samples of that metric with those labels")
    for s in result["series"]:
        if s.get("error"):
            lines.append(f"  no answer: {s['error']}")
            continue
        labels = ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())) or "(no labels)"
        value = "no value (too few or stale samples)" if s["value"] is None else f"{s['value']:g}"
        verdict = "condition TRUE: fires" + (" once it has held for `for`" if result["for"] else "")
        if not s["condition"]:
            verdict = "condition false: would not fire"
        source = f" from {s['samples']} samples" if "samples" in s else ""
        lines.append(f"  {labels}: {value}{source} -> {verdict}")
    if result.get("source"):
        lines.append(f"({result['source']})")
    return "\n".join(lines) + "\n"
