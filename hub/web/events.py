"""The events page (`/events`): the fleet's events, newest first, searched
by host, kind, text and time range, a page at a time.

`host` and `kind` filter in the store; `since` and `until` (UTC, as
`2026-01-31T12:00` from the form, or Unix seconds) bound the time; `q`
keeps events whose message, host, check name or fields hold the text
(case-insensitive). Text is matched here, not in SQL (the stored JSON
escapes non-ASCII text), over at most `SCAN` events per page: a search
that finds little in that many says where it stopped, and "older" goes on
from there (`cursor`, the store's)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from hub.read import BadQuery
from hub.store import Reader
from hub.web.render import MAX_TS, View, esc, host_href, href, page, when

KINDS = ("log", "alert", "check", "security", "lifecycle")
KIND_NAMES = {"": "any kind but check runs", "check": "check runs and changes"}
PAGE = 100  # events shown per page
SCAN = 20_000  # events read per page at most, when searching text
CHUNK = 1000
MAX_CURSOR = 1000


def link(params: Mapping[str, object]) -> str:
    return href("/events", params)


def parse_time(q: Mapping[str, str], key: str) -> float | None:
    text = q.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text[:40])
        except ValueError:
            raise BadQuery(
                f"{key} must be a time as 2026-01-31T12:00 (UTC) or Unix seconds, not {text[:40]!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = parsed.timestamp()
    if not math.isfinite(value):
        raise BadQuery(f"{key} must be a finite time, not {text[:40]!r}")
    return value


def options(q: Mapping[str, str]) -> dict[str, Any]:
    kind = q.get("kind", "")
    if kind and kind not in KINDS:
        raise BadQuery(f"kind must be one of {', '.join(KINDS)}, not {kind[:40]!r}")
    text = q.get("q", "")
    if len(text) > 200:
        raise BadQuery("q: at most 200 characters")
    host = q.get("host", "")
    if len(host) > 253:
        raise BadQuery("host: at most 253 characters")
    cursor = q.get("cursor") or None
    if cursor is not None and len(cursor) > MAX_CURSOR:
        raise BadQuery("cursor: not a cursor of this hub")
    since, until = parse_time(q, "since"), parse_time(q, "until")
    return {"host": host, "kind": kind, "q": text, "since": since, "until": until, "cursor": cursor}


def _text(event: Mapping[str, Any]) -> str:
    """What the text search looks in."""
    parts = [str(event.get("host", "")), str(event.get("message", "")), str(event.get("name", ""))]
    for key in ("fields", "line", "labels"):
        if key in event:
            parts.append(json.dumps(event[key], ensure_ascii=False, default=str))
    return "\n".join(parts).casefold()


def _check_run(event: Mapping[str, Any]) -> bool:
    """A check's run (a `check` record); its failed/recovered events are not."""
    return event.get("kind") == "check" and "attempts" in event


def search(reader: Reader, o: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None, int]:
    """(events, cursor of the next page, events read)."""
    since = o["since"] if o["since"] is not None else 0.0
    until = o["until"] if o["until"] is not None else math.inf
    host, kind = o["host"] or None, o["kind"] or None
    if not o["q"] and kind is not None:
        got = reader.events(host, kind, since, PAGE, o["cursor"], until)
        return got.items, got.next, len(got.items)
    # Any kind: all but the check runs (one a run, they would fill every
    # page); kind=check shows them.
    needle, found, read, after = o["q"].casefold(), [], 0, o["cursor"]
    while True:
        got = reader.events(host, kind, since, CHUNK, after, until)
        read += len(got.items)
        found += [
            e for e in got.items if needle in _text(e) and (kind is not None or not _check_run(e))
        ]
        after = got.next
        if after is None or len(found) >= PAGE or read >= SCAN:
            return found, after, read


def describe(event: Mapping[str, Any]) -> str:
    """An event's one line of text (plain: escape it)."""
    if event.get("kind") == "check":
        state = "ok" if event.get("ok") else "failed"
        latency = event.get("latency")
        took = (
            f" in {latency * 1000:.0f} ms"
            if isinstance(latency, (int, float)) and math.isfinite(latency)
            else ""
        )
        message = event.get("message") or ""
        return f"check {event.get('name', '?')} {state}{took}" + (f": {message}" if message else "")
    message = event.get("message")
    if message is None:
        message = event.get("line", "")
    return str(message)


def table(events: list[dict[str, Any]], now: float, show_host: bool = True) -> str:
    if not events:
        return '<p class="none">No events.</p>'
    out = ["<table class=events><thead><tr><th>Time</th>"]
    if show_host:
        out.append("<th>Host</th>")
    out.append("<th>Kind</th><th>Severity</th><th>Message</th></tr></thead><tbody>")
    for e in events:
        host = str(e.get("host", ""))
        severity = str(e.get("severity") or "")
        out.append(f'<tr class="sev-{esc(severity)}"><td>{when(e.get("ts"), now)}</td>')
        if show_host:
            out.append(f'<td><a href="{host_href(host)}">{esc(host)}</a></td>')
        fields = e.get("fields")
        detail = json.dumps(fields, ensure_ascii=False, default=str)[:2000] if fields else ""
        out.append(
            f"<td>{esc(e.get('kind', ''))}</td><td>{esc(severity)}</td>"
            f'<td class="message">{esc(describe(e)[:4000])}'
            + (f'<div class="fields">{esc(detail)}</div>' if detail else "")
            + "</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def render(reader: Reader, view: View) -> str:
    q, now, logout = view.query, view.now, view.logout
    o = options(q)
    found, after, read = search(reader, o)
    kinds = "".join(
        f'<option value="{k}"{" selected" if k == o["kind"] else ""}>'
        f"{KIND_NAMES.get(k, k)}</option>"
        for k in ("", *KINDS)
    )

    def shown(key: str) -> str:
        v = o[key]
        if v is None:
            return ""
        return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(v)) if 0 <= v <= MAX_TS else str(v)

    form = (
        '<form class="filter" method="get" action="/events">'
        f'<input name="host" value="{esc(o["host"])}" placeholder="host" aria-label="host">'
        f'<select name="kind" aria-label="kind">{kinds}</select>'
        f'<input type="search" name="q" value="{esc(o["q"])}" placeholder="text" aria-label="text">'
        f'<label>from <input type="datetime-local" name="since"'
        f' value="{esc(shown("since"))}"></label>'
        f'<label>to <input type="datetime-local" name="until"'
        f' value="{esc(shown("until"))}"></label>'
        " UTC <button>Search</button></form>"
    )
    params = {k: o[k] for k in ("host", "kind", "q")}
    params.update({k: q.get(k, "") for k in ("since", "until")})
    nav = []
    if o["cursor"]:
        nav.append(f'<a href="{link(params)}">newest</a>')
    if after:
        nav.append(f'<a rel="next" href="{link({**params, "cursor": after})}">older</a>')
    note = ""
    if (o["q"] or not o["kind"]) and after and len(found) < PAGE:
        note = f'<p class="note">Searched {read:,} events; older ones are on the next page.</p>'
    body = form + note + table(found, now) + f'<p class="pager">{" · ".join(nav)}</p>'
    return page("Events", body, "/events", logout)
