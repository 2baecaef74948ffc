"""The daily report as JSON, Markdown or one standalone HTML page.

Everything that comes from the fleet (host names, alert names, log lines,
remote addresses, mounts) is escaped: for Markdown, every character that
means something to it (and `<`, `&`: a chat client may render HTML), and
line breaks; for HTML, `html.escape`. The page has no script and loads
nothing: its style is inline. Times are shown in the report's time zone.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections.abc import Callable
from typing import Any

from hub.reports.days import zone

FORMATS = ("json", "md", "html")
CONTENT_TYPES = {
    "json": "application/json",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
# emphasis, code, links, tables, strikethrough, HTML and entities; the rest
# (".", "-", "#", "+") means something only at the start of a line, and
# every line we write starts with our own text
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        return to_html(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def md(text: object) -> str:
    """Text safe inside Markdown (a table cell included)."""
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", one_line)


def _clock(report: dict[str, Any]) -> Callable[[float | None], str]:
    name = str(report.get("timezone", ""))
    try:  # "localtime": the hub's /etc/localtime, as days.zone("") reads it
        tz = zone("" if name == "localtime" else name)
    except (ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        tz = dt.timezone.utc
    except KeyError:
        tz = dt.timezone.utc
    day = report["date"]

    def clock(ts: float | None) -> str:
        if ts is None or not math.isfinite(ts):
            return "-"
        try:
            when = dt.datetime.fromtimestamp(ts, tz)
        except (OverflowError, OSError, ValueError):
            return "-"
        text = when.strftime("%H:%M:%S")
        return text if when.date().isoformat() == day else when.strftime("%Y-%m-%d %H:%M:%S")

    return clock


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "still firing"
    s = round(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.3f} %"


def _number(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def sections(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, column names, rows of plain text, text when empty) of each
    section, for both Markdown and HTML (each escapes the cells itself)."""
    clock = _clock(report)
    out: list[tuple[str, list[str], list[list[str]], str]] = []
    out.append(
        (
            "Fleet health",
            ["Host", "Up (min)", "Silent (min)"],
            [
                [h["host"], f"{h['up_minutes']:g}", f"{h['silent_minutes']:g}"]
                for h in report["hosts"]
            ],
            "No hosts.",
        )
    )
    out.append(
        (
            "Checks",
            [
                "Host",
                "Check",
                "Availability",
                "Target",
                "Error budget left (30 d)",
                "p95 latency (s)",
            ],
            [
                [
                    c["host"],
                    c["check"],
                    _percent(c["availability"]),
                    _percent(c["target"]),
                    _percent(c["error_budget_left"]),
                    _number(c["p95_latency_seconds"], 3),
                ]
                for c in report["checks"]
            ],
            "No check ran.",
        )
    )
    out.append(
        (
            "Incidents",
            ["Host", "Alert", "Severity", "Started", "Ended", "Duration"],
            [
                [
                    i["host"],
                    i["alert"],
                    i["severity"],
                    clock(i["started"]),
                    clock(i["ended"]),
                    _duration(i["duration_seconds"]),
                ]
                for i in report["incidents"]
            ],
            "No alert fired.",
        )
    )
    out.append(
        (
            "Mean time to resolve",
            ["Severity", "Resolved", "MTTR"],
            [
                [m["severity"], str(m["incidents"]), _duration(m["mttr_seconds"])]
                for m in report.get("mttr", [])
            ],
            "Nothing resolved.",
        )
    )
    logs = report.get("log_errors", {"top": [], "new": []})
    for title, key, empty in (
        ("Top log errors", "top", "No log events."),
        ("New error signatures (not seen in the 7 days before)", "new", "None."),
    ):
        out.append(
            (
                title,
                ["Count", "Hosts", "Severity", "Signature", "Example"],
                [
                    [
                        str(g["count"]),
                        str(g["host_count"]),
                        g["severity"],
                        g["signature"],
                        g["example"],
                    ]
                    for g in logs[key]
                ],
                empty,
            )
        )
    security = report["security"]
    out.append(
        (
            "Failed logins",
            ["Remote", "Count", "Hosts"],
            [
                [f["remote"], f"{f['count']:g}", ", ".join(f.get("hosts", []))]
                for f in security["failed_logins"]
            ],
            "None.",
        )
    )
    out.append(
        (
            "Brute-force attempts",
            ["Host", "Time", "Remote", "Failures", "Message"],
            [
                [b["host"], clock(b["ts"]), b["remote"], str(b["count"]), b["message"]]
                for b in security.get("brute_force", [])
            ],
            "None.",
        )
    )
    out.append(
        (
            "Capacity: file systems full within 7 days",
            ["Host", "Mount", "Days to full", "Free (GiB)"],
            [
                [
                    c["host"],
                    c["mount"],
                    _number(c["days_to_full"]),
                    _number(c.get("free_bytes", math.nan) / 2**30),
                ]
                for c in report["capacity"]
            ],
            "None.",
        )
    )
    return out


def to_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {md(report['headline'])}", ""]
    lines.append(f"Day {md(report['date'])}, time zone {md(report.get('timezone', ''))}.")
    for title, columns, rows, empty in sections(report):
        lines += ["", f"## {md(title)}", ""]
        if not rows:
            lines.append(md(empty))
            continue
        lines.append("| " + " | ".join(md(c) for c in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td{max-width:40em;overflow-wrap:anywhere}"
    "p.empty{color:#666}"
)


def to_html(report: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(report['headline'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{e(report['headline'])}</h1>",
        f"<p>Day {e(report['date'])}, time zone {e(str(report.get('timezone', '')))}.</p>",
    ]
    for title, columns, rows, empty in sections(report):
        parts.append(f"<h2>{e(title)}</h2>")
        if not rows:
            parts.append(f'<p class="empty">{e(empty)}</p>')
            continue
        parts.append("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns))
        parts.append("</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
