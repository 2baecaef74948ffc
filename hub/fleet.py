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

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.core.exposition import escape_label, format_value, labels_text
from hub.guard import Counts
from hub.ingest import Ingest
from hub.store import Reader

# The hub's own figures: family -> (type, help, [(sample name, labels, value), ...])
Sample = tuple[str, dict[str, str], float]
Family = tuple[str, str, list[Sample]]
Figures = Callable[[], Mapping[str, Family]]


def own_figures(
    ingest: Ingest, counts: Counts, db: Path, forwards: Sequence[Any] = ()
) -> dict[str, Family]:
    """The hub's own figures (docs/hub.md)."""
    name = "vigil_hub_ingest_duration_seconds"
    histogram: list[Sample] = [
        (f"{name}_bucket", {"le": format_value(le)}, float(n))
        for le, n in ingest.latency.cumulative()
    ]
    histogram.append((f"{name}_sum", {}, ingest.latency.sum))
    histogram.append((f"{name}_count", {}, float(ingest.latency.count)))
    rejected = "vigil_hub_ingest_rejected_total"
    limited = "vigil_hub_clients_limited_total"
    out: dict[str, Family] = {
        rejected: (
            "counter",
            "Ingest requests refused, by reason.",
            [(rejected, {"reason": r}, float(n)) for r, n in sorted(ingest.rejected.items())],
        ),
        name: (
            "histogram",
            "Seconds from an accepted batch's body in hand to its commit.",
            histogram,
        ),
        limited: (
            "counter",
            "Connections and requests refused or closed by the hub's limits, by what.",
            [(limited, {"what": w}, float(n)) for w, n in sorted(counts.total.items())],
        ),
    }
    for family, help_text, value in (
        ("vigil_hub_store_commits_total", "Ingest transactions (group commits).",
         ingest.committer.groups),
        ("vigil_hub_store_group_batches_total",
         "Batches in those transactions, refused ones included; over commits: the mean group size.",
         ingest.committer.batches),
    ):  # fmt: skip
        out[family] = ("counter", help_text, [(family, {}, float(value))])

    def gauge(family: str, help_text: str, value: float) -> None:
        out[family] = ("gauge", help_text, [(family, {}, value)])

    gauge(
        "vigil_hub_store_size_bytes",
        "Bytes of the store's files on disk (hub.db with its -wal and -shm).",
        float(_files_bytes(db, "", "-wal", "-shm")),
    )
    if ingest.keys.previous is not None:  # a secret rotation is under way
        gauge(
            "vigil_hub_previous_secret_hosts",
            "Hosts whose latest push had a token of the previous secret.",
            float(len(ingest.on_previous)),
        )
        gauge(
            "vigil_hub_previous_secret_expiry_timestamp_seconds",
            "Unix time the previous secret stops being accepted.",
            ingest.keys.previous_until,
        )
    if forwards:  # hub/forward: each forwarder's sent, dropped, retries and lag
        out.update(forward_figures(forwards, time.time()))
    return out


def forward_figures(forwards: Sequence[Any], now: float) -> dict[str, Family]:
    sent, dropped = (
        "vigil_hub_forward_sent_samples_total",
        "vigil_hub_forward_dropped_samples_total",
    )
    retries, lag = "vigil_hub_forward_retries_total", "vigil_hub_forward_lag_seconds"
    leading = "vigil_hub_forward_leading"
    return {
        sent: (
            "counter",
            "Samples the receiver took (2xx), by forward.",
            [(sent, {"forward": f.name}, float(f.sent)) for f in forwards],
        ),
        dropped: (
            "counter",
            "Samples given up, by forward and reason: 4xx (refused), expired, invalid.",
            [
                (dropped, {"forward": f.name, "reason": r}, float(n))
                for f in forwards
                for r, n in sorted(f.dropped.items())
            ],
        ),
        retries: (
            "counter",
            "Sends tried again after a 5xx, a 429 or a network error, by forward.",
            [(retries, {"forward": f.name}, float(f.retries)) for f in forwards],
        ),
        lag: (
            "gauge",
            "Age of the oldest committed batch not yet forwarded; 0 when caught up.",
            [(lag, {"forward": f.name}, f.lag(now)) for f in forwards],
        ),
        leading: (
            "gauge",
            "1 if this hub sends the forward now; 0 if another hub on the shared store does.",
            [(leading, {"forward": f.name}, float(f.leading)) for f in forwards],
        ),
    }


def _files_bytes(path: Path, *suffixes: str) -> int:
    total = 0
    for suffix in suffixes:
        with contextlib.suppress(OSError):  # -wal and -shm come and go
            total += os.stat(f"{path}{suffix}").st_size
    return total


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
    for name, rows in itertools.groupby(reader.latest(), key=lambda row: row[1]):
        series = [(host, json.loads(labels), kind, value) for host, _, labels, kind, value in rows]
        kind = series[0][2] if series[0][2] in ("gauge", "counter") else "untyped"
        if kind == "gauge" and any("quantile" in pairs for _, pairs, _, _ in series):
            kind = "summary"  # precomputed quantiles (check_latency_seconds), as the agent says
        # the agents' help texts stay with them; Prometheus wants one
        yield f"# HELP {name} {name}, each host's latest value.\n# TYPE {name} {kind}\n"
        for host, pairs, _, value in series:
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
