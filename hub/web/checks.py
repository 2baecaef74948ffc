"""The checks page (`/checks`): every check of every host with its state,
availability over 24 h and 30 d against its target, the error budget left
over 30 d and the p95 latency.

The figures are the agent's own SLA gauges as last sent
(`check_availability_ratio{window}`, `check_latency_seconds{window,
quantile="0.95"}`, docs/checks.md, "SLA figures"): the agent counts every
run, so they are exact for its windows, and reading them is one lookup
per series. The target is the check's `availability_target` label
("0.995" or "99.5%"), else 99.9 %; error budget left =
1 - (1 - availability_30d) / (1 - target): 100 % untouched, 0 spent,
negative overspent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.read import BadQuery
from hub.store import Reader
from hub.web.render import DASH, esc, finite, host_href, number, page

DEFAULT_TARGET = 0.999
TARGET_LABEL = "availability_target"
NAMES = ("check_up", "check_availability_ratio", "check_latency_seconds")


def parse_target(text: object) -> float | None:
    """ "0.995" or "99.5%"; None unless strictly between 0 and 1."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    raw = text.strip()
    try:
        value = float(raw.removesuffix("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        return None
    return value if 0 < value < 1 else None


def rows(reader: Reader, host: str | None = None) -> list[dict[str, Any]]:
    """One row per (host, check), by host and check."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for h, name, labels_json, value in reader.latest_of(NAMES, host):
        labels = json.loads(labels_json)
        check = labels.get("check")
        if not isinstance(check, str):
            continue
        row = out.setdefault(
            (h, check),
            {"host": h, "check": check, "type": labels.get("type", ""), "target": DEFAULT_TARGET},
        )
        target = parse_target(labels.get(TARGET_LABEL))
        if target is not None:
            row["target"] = target
        window = labels.get("window")
        if name == "check_up":
            row["up"] = value
        elif name == "check_availability_ratio" and window in ("24h", "30d"):
            row[f"availability_{window}"] = value
        elif (
            name == "check_latency_seconds"
            and labels.get("quantile") == "0.95"
            and (window == "30d" or "p95" not in row)  # the 30-day figure, else another
        ):
            row["p95"] = value
    for row in out.values():
        available = finite(row.get("availability_30d"))
        row["budget"] = None if available is None else 1 - (1 - available) / (1 - row["target"])
    return [out[key] for key in sorted(out)]


def table(rows: list[dict[str, Any]], show_host: bool = True) -> str:
    if not rows:
        return '<p class="none">No checks.</p>'
    head = "<th>Host</th>" if show_host else ""
    out = [
        f"<table id=checks class=sortable><thead><tr>{head}<th>Check</th><th>State</th>"
        "<th>24 h</th><th>30 d</th><th>Target</th><th>Budget left (30 d)</th>"
        "<th>p95 latency</th></tr></thead><tbody>"
    ]
    for r in rows:
        up = finite(r.get("up"))
        state = DASH if up is None else "passing" if up >= 1 else "failing"
        a24, a30 = finite(r.get("availability_24h")), finite(r.get("availability_30d"))
        budget = finite(r.get("budget"))
        p95 = finite(r.get("p95"))
        below = a30 is not None and a30 < r["target"]
        host = (
            f'<td><a href="{host_href(r["host"])}">{esc(r["host"])}</a></td>' if show_host else ""
        )
        out.append(
            f'<tr class="{"bad" if below or state == "failing" else ""}">{host}'
            f"<td>{esc(r['check'])} <small>{esc(r['type'])}</small></td>"
            f'<td><span class="state {state}">{state}</span></td>'
            f"<td class=num>{_percent(a24)}</td><td class=num>{_percent(a30)}</td>"
            f"<td class=num>{_percent(r['target'])}</td>"
            f'<td class="num{" over" if budget is not None and budget < 0 else ""}">'
            f"{_percent(budget, 1)}</td>"
            f"<td class=num>{DASH if p95 is None else number(p95 * 1000, 'ms')}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _percent(ratio: float | None, digits: int = 3) -> str:
    return number(None if ratio is None else ratio * 100, "%", digits)


def render(reader: Reader, q: Mapping[str, str], now: float, logout: bool) -> str:
    host = q.get("host") or None
    if host is not None and len(host) > 253:
        raise BadQuery("host: at most 253 characters")
    found = rows(reader, host)
    failing = sum(1 for r in found if finite(r.get("up")) == 0)
    note = (
        '<p class="note">Availability and latency as each agent last computed them'
        " over its own windows (docs/checks.md, \u201cSLA figures\u201d); target"
        f" {DEFAULT_TARGET:.1%} unless the check has an <code>{TARGET_LABEL}</code> label.</p>"
    )
    counts = f'<p class="counts"><b>{len(found)}</b> checks, <b>{failing}</b> failing</p>'
    return page("Checks", counts + note + table(found), "/checks", logout)
