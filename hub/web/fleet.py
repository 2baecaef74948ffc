"""The fleet page (`/`): every host with its status, last batch, agent
version, CPU, memory and root disk now, firing alerts and an hour of CPU
as a sparkline; counts by status on top; sorted and filtered by query
parameters (`sort`, `order`, `q`, `status`), so it works without script,
and instantly in the browser with hub/web/static/vigil.js.

Four reads, whatever the fleet's size: the hosts, the alerts, the latest
values of three metrics (`Reader.latest_of`) and the CPU rollups of the
last hour for every host at once (`Reader.rollups_of`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from hub.read import BadQuery
from hub.store import Reader
from hub.web.charts import sparkline
from hub.web.render import View, esc, finite, host_href, href, number, page, when

STATUSES = ("up", "late", "silent", "retired")
COLUMNS = {  # sort key -> heading
    "host": "Host",
    "status": "Status",
    "seen": "Last seen",
    "version": "Version",
    "cpu": "CPU",
    "memory": "Memory",
    "disk": "Disk /",
    "alerts": "Firing",
}
CPU, MEMORY, DISK = "cpu_usage_percent", "memory_used_percent", "disk_used_percent"
CPU_ALL = '{"cpu":"all"}'
STATUS_ORDER = {s: i for i, s in enumerate(("silent", "late", "up", "retired"))}


def options(q: Mapping[str, str]) -> tuple[str, str, str, str]:
    """(sort, order, text, status) from the query; BadQuery if not valid."""
    sort, order = q.get("sort", "host"), q.get("order", "asc")
    status, text = q.get("status", ""), q.get("q", "")
    if sort not in COLUMNS:
        raise BadQuery(f"sort must be one of {', '.join(COLUMNS)}, not {sort[:40]!r}")
    if order not in ("asc", "desc"):
        raise BadQuery(f"order must be asc or desc, not {order[:40]!r}")
    if status and status not in STATUSES:
        raise BadQuery(f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}")
    if len(text) > 200:
        raise BadQuery("q: at most 200 characters")
    return sort, order, text, status


def rows(
    reader: Reader, now: float, status_of: Callable[[Mapping[str, Any]], str]
) -> list[dict[str, Any]]:
    """Every host with what the page shows of it."""
    hosts = reader.hosts()
    latest: dict[tuple[str, str], float] = {}
    for host, name, labels, value in reader.latest_of((CPU, MEMORY, DISK)):
        if name == CPU and labels != CPU_ALL:
            continue
        if name == DISK and json.loads(labels).get("mount") != "/":
            continue
        latest[(host, name)] = value
    firing: dict[str, int] = {}
    for alert in reader.alerts():
        if alert["state"] == "firing":
            firing[alert["host"]] = firing.get(alert["host"], 0) + 1
    spark = reader.rollups_of(CPU, CPU_ALL, now - 3600, now)
    return [
        {
            "host": h["id"],
            "status": status_of(h),
            "seen": h["last_seen"],
            "version": h["agent_version"],
            "cpu": latest.get((h["id"], CPU)),
            "memory": latest.get((h["id"], MEMORY)),
            "disk": latest.get((h["id"], DISK)),
            "alerts": firing.get(h["id"], 0),
            "spark": spark.get(h["id"], []),
        }
        for h in hosts
    ]


def _key(column: str) -> Callable[[dict[str, Any]], Any]:
    if column == "status":
        return lambda r: (STATUS_ORDER[r["status"]], r["host"])
    if column in ("cpu", "memory", "disk", "seen", "alerts"):
        # no value sorts below every value, in both orders' sense of "below"
        return lambda r: (finite(r[column]) is not None, finite(r[column]) or 0.0, r["host"])
    return lambda r: (str(r[column]), r["host"])


def render(reader: Reader, view: View) -> str:
    q, now, status_of, logout = view.query, view.now, view.status, view.logout
    sort, order, text, status = options(q)
    everything = rows(reader, now, status_of)
    counts = {s: 0 for s in STATUSES}
    for r in everything:
        counts[r["status"]] += 1
    needle = text.casefold()
    shown = [
        r
        for r in everything
        if (not status or r["status"] == status)
        and (not needle or needle in r["host"].casefold() or needle in r["version"].casefold())
    ]
    shown.sort(key=_key(sort), reverse=order == "desc")
    keep, ordered = {"q": text, "status": status}, {"sort": sort, "order": order}
    tally = "".join(
        f'<a class="count {s}" href="{href("/", {**keep, "status": s, **ordered})}">'
        f"<b>{counts[s]}</b> {s}</a>"
        for s in STATUSES
    )
    choices = "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s or "any status"}</option>'
        for s in ("", *STATUSES)
    )
    form = (
        '<form class="filter" method="get" action="/">'
        f'<input type="search" name="q" value="{esc(text)}" placeholder="host or version"'
        ' aria-label="filter by text" data-filter="fleet">'
        f'<select name="status" aria-label="status" data-filter-status="fleet">{choices}</select>'
        f'<input type="hidden" name="sort" value="{esc(sort)}">'
        f'<input type="hidden" name="order" value="{esc(order)}">'
        "<button>Filter</button></form>"
    )
    heads = []
    for column, title in COLUMNS.items():
        flip = "desc" if column == sort and order == "asc" else "asc"
        mark = (" ▲" if order == "asc" else " ▼") if column == sort else ""
        link = href("/", {**keep, "sort": column, "order": flip})
        heads.append(f'<th data-sort="{column}"><a href="{link}">{title}{mark}</a></th>')
    heads.append("<th>CPU, last hour</th>")
    body = [
        f'<p class="counts">{tally} <span class="total">{len(everything)} hosts</span></p>',
        form,
        f'<table id="fleet" class="sortable"><thead><tr>{"".join(heads)}</tr></thead><tbody>',
    ]
    for r in shown:
        body.append(_row(r, now))
    body.append("</tbody></table>")
    if not shown:
        body.append('<p class="none">No host matches.</p>' if everything else _empty())
    return page("Fleet", "".join(body), "/", logout)


def _row(r: dict[str, Any], now: float) -> str:
    host, s = r["host"], r["status"]
    cells = [
        f'<td data-v="{esc(host)}"><a href="{host_href(host)}">{esc(host)}</a></td>',
        f'<td data-v="{STATUS_ORDER[s]}"><span class="status {s}">{s}</span></td>',
        f'<td data-v="{finite(r["seen"]) or 0}">{when(r["seen"], now)}</td>',
        f'<td data-v="{esc(r["version"])}">{esc(r["version"])}</td>',
    ]
    for column in ("cpu", "memory", "disk"):
        v = finite(r[column])
        cells.append(f'<td class="num" data-v="{"" if v is None else v}">{number(v, "%")}</td>')
    n = r["alerts"]
    cells.append(f'<td class="num{" firing" if n else ""}" data-v="{n}">{n}</td>')
    cells.append(f"<td>{sparkline(r['spark'], now - 3600, now)}</td>")
    return f'<tr class="{s}" data-status="{s}">{"".join(cells)}</tr>'


def _empty() -> str:
    return (
        '<p class="none">No host has reported yet. Give an agent a token'
        " (<code>vigil hub token HOST</code>) and point its <code>[hub] url</code> here.</p>"
    )
