"""The checks page (`/checks`): every check of every host with its state,
availability over 24 h and 30 d against its target, the error budget left
over 30 d and the p95 latency over 24 h.

The figures are the hub's own, from what it stored (hub/sla.py, the daily
report's computation): runs and passing runs from the `check_up` rollups,
p95 from the passing runs' check events of the last 24 h (30 days of
those would be a month of a fleet's events to read per page view). The
30-day availability follows from the budget left, which hub/sla.py
computes over the 30 days: a30 = 1 - (1 - budget) * (1 - target). The
target is the check's `availability_target` label ("0.995" or "99.5%"),
else 99.9 %. A check with no run in the last 24 h is not listed. The state
(passing or failing) is the check's latest `check_up`."""

from __future__ import annotations

import json
import time
from typing import Any

from hub import sla
from hub.read import BadQuery
from hub.store import STEP, Reader
from hub.web.render import DASH, View, esc, finite, host_href, number, page

DEFAULT_TARGET = sla.DEFAULT_TARGET
TARGET_LABEL = sla.TARGET_LABEL


def rows(
    reader: Reader,
    host: str | None = None,
    now: float | None = None,
    target: float = DEFAULT_TARGET,
) -> list[dict[str, Any]]:
    """One row per (host, check), by host and check."""
    now = time.time() if now is None else now
    up: dict[tuple[str, str], float] = {}
    for h, _, labels, value in reader.latest_of(("check_up",), host):
        check = json.loads(labels).get("check")
        if isinstance(check, str):
            up[(h, check)] = value
    out = []
    # sla.checks rounds its window down to 5-minute buckets: end after the
    # current one, so a page shows the runs of the last minutes too
    end = now + STEP
    hosts = None if host is None else [host]
    for c in sla.checks(reader, end - 86400, end, target, hosts=hosts):
        budget = c.error_budget_left
        out.append(
            {
                "host": c.host,
                "check": c.check,
                "up": up.get((c.host, c.check)),
                "availability_24h": c.availability,
                "availability_30d": None if budget is None else 1 - (1 - budget) * (1 - c.target),
                "target": c.target,
                "budget": budget,
                "p95": c.p95_latency_seconds,
                "runs": c.runs,
            }
        )
    return out


def table(rows: list[dict[str, Any]], show_host: bool = True) -> str:
    if not rows:
        return '<p class="none">No checks.</p>'
    head = "<th>Host</th>" if show_host else ""
    out = [
        f"<table id=checks class=sortable><thead><tr>{head}<th>Check</th><th>State</th>"
        "<th>24 h</th><th>30 d</th><th>Target</th><th>Budget left (30 d)</th>"
        "<th>p95 latency (24 h)</th></tr></thead><tbody>"
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
            f"<td>{esc(r['check'])} <small>{r['runs']:,} runs</small></td>"
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


def render(reader: Reader, view: View) -> str:
    q, now, logout, target = view.query, view.now, view.logout, view.target
    host = q.get("host") or None
    if host is not None and len(host) > 253:
        raise BadQuery("host: at most 253 characters")
    found = rows(reader, host, now, target)
    failing = sum(1 for r in found if finite(r.get("up")) == 0)
    note = (
        '<p class="note">From the runs the hub stored (the daily report\u2019s figures);'
        f" target {target:.1%} (<code>[hub.reports] availability_target</code>) unless the"
        f" check has an <code>{TARGET_LABEL}</code>"
        " label. Checks that ran in the last 24 h.</p>"
    )
    counts = f'<p class="counts"><b>{len(found)}</b> checks, <b>{failing}</b> failing</p>'
    return page("Checks", counts + note + table(found), "/checks", logout)
