"""The one template helper of the web pages: escaping, the page frame,
numbers, times and links. Every string that reaches HTML goes through
`esc` (text and attribute values alike: `html.escape` with quotes), and
every link through `href`, so a host name, a label or a log line is shown
as text whatever it holds."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

NAV = (("/", "Fleet"), ("/alerts", "Alerts"), ("/checks", "Checks"), ("/events", "Events"))
DASH = "\u2013"  # what a missing or non-finite value shows
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z: later than that is shown as a number


@dataclass(frozen=True)
class View:
    """What every page is built from besides the store."""

    query: Mapping[str, str]  # the request's query parameters
    now: float
    logout: bool  # show "Log out": signed in by the cookie
    status: Callable[[Mapping[str, Any]], str]  # a host's up/late/silent/retired
    target: float  # [hub.reports] availability_target, as running
    host: str | None = None  # /hosts/{host}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def href(path: str, params: Mapping[str, object] | None = None) -> str:
    """An escaped URL for an attribute: `path` and query `params` (empty
    and None values left out)."""
    kept = {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}
    return esc(path + ("?" + urlencode(kept) if kept else ""))


def host_href(host: str, **params: object) -> str:
    return href("/hosts/" + quote(host, safe=""), params)


def page(title: str, body: str, active: str = "", logout: bool = False) -> str:
    nav = "".join(
        f'<a href="{path}"{" class=on" if path == active else ""}>{name}</a>' for path, name in NAV
    )
    out = (
        '<form method="post" action="/logout" class="logout"><button>Log out</button></form>'
        if logout
        else ""
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · vigil hub</title>"
        '<link rel=stylesheet href="/static/vigil.css">'
        '<script src="/static/vigil.js" defer></script></head>\n'
        f"<body><header><b>vigil hub</b><nav>{nav}</nav>{out}</header>\n"
        f"<main><h1>{esc(title)}</h1>\n{body}\n</main></body></html>\n"
    )


def finite(value: object) -> float | None:
    """`value` as a float if it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float
        return None
    return number if math.isfinite(number) else None


def number(value: object, unit: str = "", digits: int = 1) -> str:
    """A number for a person: 12.3 %, 1.5 k, 2.1 MB/s; a dash if not finite."""
    v = finite(value)
    if v is None:
        return DASH
    if unit == "%":
        return f"{v:.{digits}f} %" if abs(v) < 1e6 else f"{v:.3g} %"
    scaled, prefix = v, ""
    for p in ("k", "M", "G", "T", "P"):
        if abs(scaled) < 1000:
            break
        scaled, prefix = scaled / 1000, p
    if abs(scaled) >= 1000:  # beyond peta: plainly
        return f"{v:.3g}{' ' + unit if unit else ''}"
    text = f"{scaled:.{digits}f}".rstrip("0").rstrip(".") if prefix or v != int(v) else f"{v:.0f}"
    tail = f" {prefix}{unit}" if prefix or unit else ""
    return text + tail


def utc(ts: object) -> str:
    """ISO 8601 in UTC, to the second; the value itself if out of range
    (plain text: escape it)."""
    v = finite(ts)
    if v is None or not 0 <= v <= MAX_TS:
        return str(ts)[:40]
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))


def ago(ts: object, now: float) -> str:
    """How long ago `ts` was: "12 s ago", "3 min ago", "in 5 d" for a
    clock ahead."""
    v = finite(ts)
    if v is None:
        return "never"
    age = now - v
    span = abs(age)
    if span < 90:
        text = f"{span:.0f} s"
    elif span < 5400:
        text = f"{span / 60:.0f} min"
    elif span < 172800:
        text = f"{span / 3600:.0f} h"
    elif span < 3.2e10:
        text = f"{span / 86400:.0f} d"
    else:
        text = "ages"
    return f"{text} ago" if age >= 0 else f"in {text}"


def when(ts: object, now: float) -> str:
    """`<time>`: relative, with the absolute time in its title."""
    return f'<time title="{esc(utc(ts))}">{esc(ago(ts, now))}</time>'


def error_page(status: int, message: str, logout: bool = False) -> str:
    return page(f"{status}", f'<p class="error">{esc(message)}</p>', logout=logout)
