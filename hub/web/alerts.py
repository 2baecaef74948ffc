"""The alerts page (`/alerts`): what is pending or firing across the fleet
now (the hub's alert states: the agents' and its own HostSilent), then the
history, newest first: every alert transition the hosts sent and the hub
raised (alert events), a page at a time (`cursor`)."""

from __future__ import annotations

from typing import Any

from hub.read import BadQuery
from hub.store import Reader
from hub.web.host import alert_rows
from hub.web.render import View, esc, host_href, href, page, when

PAGE = 100
MAX_CURSOR = 1000


def render(reader: Reader, view: View) -> str:
    q, now, logout = view.query, view.now, view.logout
    cursor = q.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR:
        raise BadQuery("cursor: not a cursor of this hub")
    current = reader.alerts()
    firing = sum(a["state"] == "firing" for a in current)
    history = reader.events(None, "alert", 0.0, PAGE, cursor)
    body = [
        f'<p class="counts"><span class="count silent"><b>{firing}</b> firing</span>'
        f' <span class="count late"><b>{len(current) - firing}</b> pending</span></p>',
        "<h2>Active</h2>",
        alert_rows(current, now, show_host=True),
        "<h2>History</h2>",
        _history(history.items, now),
    ]
    nav = []
    if cursor:
        nav.append(f'<a href="{href("/alerts")}">newest</a>')
    if history.next:
        nav.append(f'<a rel="next" href="{href("/alerts", {"cursor": history.next})}">older</a>')
    body.append(f'<p class="pager">{" · ".join(nav)}</p>')
    return page("Alerts", "".join(body), "/alerts", logout)


def _history(events: list[dict[str, Any]], now: float) -> str:
    if not events:
        return '<p class="none">No alert has fired yet.</p>'
    rows = []
    for e in events:
        fields = e["fields"] if isinstance(e.get("fields"), dict) else {}
        state = str(fields.get("state", "?"))
        host = str(e.get("host", ""))
        rows.append(
            f"<tr><td>{when(e.get('ts'), now)}</td>"
            f'<td><a href="{host_href(host)}">{esc(host)}</a></td>'
            f"<td>{esc(fields.get('rule', '?'))}</td>"
            f'<td><span class="state {esc(state)}">{esc(state)}</span></td>'
            f"<td>{esc(e.get('severity', ''))}</td><td>{when(fields.get('since'), now)}</td>"
            f"<td>{esc(str(e.get('message', ''))[:2000])}</td></tr>"
        )
    return (
        "<table><thead><tr><th>Time</th><th>Host</th><th>Alert</th><th>State</th>"
        "<th>Severity</th><th>Since</th><th>Summary</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
