"""A host's page (`/hosts/{host}?range=1h|24h|7d`): its status, charts of
CPU, memory, disk, network and load, its checks, and its recent log,
security and alert events.

The charts read raw points for 1 h and the 5-minute rollups for 24 h (a
point per 5 minutes) and 7 d (per 30 minutes): at most a few hundred
points per line whatever the range, and every read is capped at
`MAX_POINTS` points, so a host with many disks or interfaces cannot make
a page read more (an hour of raw points over that, from an agent with a
short interval, is read from the rollups instead)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.read import BadQuery
from hub.store import Reader
from hub.web import checks as checks_page
from hub.web import events as events_page
from hub.web.charts import chart
from hub.web.render import View, esc, host_href, number, page, when

RANGES = {"1h": (3600.0, None), "24h": (86400.0, 300.0), "7d": (7 * 86400.0, 1800.0)}
MAX_POINTS = 5000  # per chart read
EVENTS = 15  # of each kind
# (title, metric, label that names a line, unit, floor, ceiling, label filter)
CHARTS: tuple[tuple[str, str, str, str, float | None, float | None, dict[str, str]], ...] = (
    ("CPU", "cpu_usage_percent", "cpu", "%", 0.0, 100.0, {"cpu": "all"}),
    ("Memory used", "memory_used_percent", "", "%", 0.0, 100.0, {}),
    ("Disk used", "disk_used_percent", "mount", "%", 0.0, 100.0, {}),
    ("Network received", "network_receive_bytes_per_second", "device", "B/s", 0.0, None, {}),
    ("Network sent", "network_transmit_bytes_per_second", "device", "B/s", 0.0, None, {}),
    ("Load average", "load_average", "period", "", 0.0, None, {}),
)


def span(q: Mapping[str, str]) -> str:
    chosen = q.get("range", "1h")
    if chosen not in RANGES:
        raise BadQuery(f"range must be one of {', '.join(RANGES)}, not {chosen[:40]!r}")
    return chosen


def render(reader: Reader, view: View) -> str | None:
    """The page, or None if the hub has never heard of `view.host`."""
    q, now, status_of, logout = view.query, view.now, view.status, view.logout
    host = view.host or ""
    chosen = span(q)
    found = [h for h in reader.hosts() if h["id"] == host]
    if not found:
        return None
    h = found[0]
    status = status_of(h)
    seconds, step = RANGES[chosen]
    since = now - seconds
    tabs = " ".join(
        f'<a href="{host_href(host, range=r)}"{" class=on" if r == chosen else ""}>{r}</a>'
        for r in RANGES
    )
    firing = [a for a in reader.alerts() if a["host"] == host]
    head = (
        f'<p class="facts"><span class="status {status}">{status}</span>'
        f" last seen {when(h['last_seen'], now)} · agent {esc(h['agent_version'])}"
        f" · interval {number(h['interval'])} s · clock offset {number(h['clock_offset'])} s"
        f" · first seen {when(h['first_seen'], now)}</p>"
    )
    charts = []
    for title, metric, by, unit, floor, ceiling, only in CHARTS:
        page_ = reader.metrics(host, metric, since, now, MAX_POINTS, None, step, "avg")
        if page_.next and step is None:  # more raw points than a page: 5-minute rollups
            page_ = reader.metrics(host, metric, since, now, MAX_POINTS, None, 300.0, "avg")
        lines = []
        for s in page_.items:
            labels = s["labels"]
            if any(labels.get(k) != v for k, v in only.items()):
                continue
            label = str(labels.get(by, metric)) if by else title
            lines.append((label, s["points"]))
        lines.sort(key=lambda line: line[0])
        note = " (first points only)" if page_.next else ""
        charts.append(chart(title + note, lines, since, now, unit, floor, ceiling))
    body = [
        head,
        f'<p class="tabs">Range: {tabs}</p>',
        f'<section class="charts">{"".join(charts)}</section>',
        "<h2>Alerts now</h2>",
        alert_rows(firing, now),
        "<h2>Checks</h2>",
        checks_page.table(checks_page.rows(reader, host, now, view.target), show_host=False),
    ]
    for kind, title in (("alert", "Alert history"), ("log", "Log"), ("security", "Security")):
        items = reader.events(host, kind, 0.0, EVENTS).items
        more = events_page.link({"host": host, "kind": kind})
        body.append(f'<h2>{title} <a class="more" href="{more}">all</a></h2>')
        body.append(events_page.table(items, now, show_host=False))
    return page(host, "".join(body), "", logout)


def alert_rows(alerts: list[dict[str, Any]], now: float, show_host: bool = False) -> str:
    """A table of current alerts (Reader.alerts()); the alerts page's too."""
    if not alerts:
        return '<p class="none">None pending or firing.</p>'
    rows = []
    for a in alerts:
        host = (
            f'<td><a href="{host_href(a["host"])}">{esc(a["host"])}</a></td>' if show_host else ""
        )
        rows.append(
            f'<tr><td><span class="state {esc(a["state"])}">{esc(a["state"])}</span></td>{host}'
            f"<td>{esc(a['name'])}</td><td>{esc(a['severity'])}</td>"
            f"<td>{when(a['since'], now)}</td>"
            f'<td>{esc(a["summary"])}</td><td class="labels">{esc(_labels(a["labels"]))}</td></tr>'
        )
    return (
        "<table><thead><tr><th>State</th>"
        + ("<th>Host</th>" if show_host else "")
        + "<th>Alert</th><th>Severity</th><th>Since</th><th>Summary</th><th>Labels</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _labels(labels: object) -> str:
    if not isinstance(labels, dict):
        return ""
    return ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in labels.items()
    )
