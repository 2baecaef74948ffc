"""What the hub shows of the fleet: `/metrics` in Prometheus text, and
`/v1/alerts`. Both read through the read threads (hub/read.py).

/metrics holds the hub's own figures, `vigil_hub_host_up{host}` (1 up or
late, 0 silent; retired hosts are left out) and
`vigil_hub_host_last_seen_timestamp_seconds{host}`, then every host's
latest value of every series with a `host` label, so a Prometheus scraping
the hub sees the fleet. A series that has a `host` label of its own keeps
it as `exported_host`, as Prometheus' federation does. Values are the
stored ones: NaN and infinity are legal in this format and kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agent.core.exposition import escape_label, format_value, labels_text
from hub.store import Reader

# The hub's own figures: family -> (type, help, [(sample name, labels, value), ...])
Sample = tuple[str, dict[str, str], float]
Figures = Callable[[], Mapping[str, tuple[str, str, list[Sample]]]]


def metrics_text(reader: Reader, status: Callable[[Mapping[str, Any]], str], own: Figures) -> str:
    return "".join(_lines(reader, status, own))


def _lines(
    reader: Reader, status: Callable[[Mapping[str, Any]], str], own: Figures
) -> Iterator[str]:
    for family, (kind, help_text, samples) in sorted(own().items()):
        yield f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"
        for sample, tags, value in samples:
            tags_text = f"{{{labels_text(tags)}}}" if tags else ""
            yield f"{sample}{tags_text} {format_value(value)}\n"
    hosts = [h for h in reader.hosts() if not h["retired"]]
    yield "# HELP vigil_hub_host_up 1 if the host is up or late, 0 if silent.\n"
    yield "# TYPE vigil_hub_host_up gauge\n"
    for h in hosts:
        up = 0 if status(h) == "silent" else 1
        yield f'vigil_hub_host_up{{host="{escape_label(h["id"])}"}} {up}\n'
    yield "# HELP vigil_hub_host_last_seen_timestamp_seconds When the host's last batch came.\n"
    yield "# TYPE vigil_hub_host_last_seen_timestamp_seconds gauge\n"
    for h in hosts:
        host = escape_label(h["id"])
        seen = format_value(h["last_seen"])
        yield f'vigil_hub_host_last_seen_timestamp_seconds{{host="{host}"}} {seen}\n'
    current = None
    for host, name, labels, kind, value in reader.latest():
        if name != current:
            current = name
            yield f"# TYPE {name} {kind if kind in ('gauge', 'counter') else 'untyped'}\n"
        pairs = json.loads(labels)
        if "host" in pairs:
            pairs["exported_host"] = pairs.pop("host")
        pairs["host"] = host
        yield f"{name}{{{labels_text(pairs)}}} {format_value(value)}\n"


def alerts_answer(reader: Reader, state: str | None, since: float, limit: int) -> dict[str, Any]:
    """`/v1/alerts`: pending and firing now; `state=resolved` the resolutions
    since `since` (newest first, at most `limit`), from the alert events."""
    if state != "resolved":
        current = reader.alerts()
        if state:
            current = [a for a in current if a["state"] == state]
        return {"alerts": current}
    out = []
    for event in reader.events(None, "alert", since, limit).items:
        fields = event.get("fields") or {}
        if fields.get("state") != "resolved":
            continue
        out.append(
            {
                "host": event["host"],
                "name": fields.get("rule"),
                "state": "resolved",
                "severity": event.get("severity"),
                "since": fields.get("since"),
                "ended": event["ts"],
                "summary": event.get("message", ""),
                "labels": fields.get("labels") or {},
            }
        )
    return {"alerts": out}
