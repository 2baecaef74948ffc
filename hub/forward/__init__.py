"""Forwarding: what the hub stores, sent on to a time-series database
(docs/hub.md, "Forwarding to Prometheus / VictoriaMetrics").

Imported by hub/app.py only when `[[hub.forward]]` tables are configured,
so a hub without forwards loads none of this (nor cramjam).

A forward's `type` picks its sender here. One type today,
`prometheus_remote_write` (remote_write.py: the wire format;
forwarder.py: the cursors, the retries). Another type is a module with a
`Forwarder`-like class (`run()`, and the counters `own_figures` reads:
`sent`, `dropped`, `retries`, `lag(now)`), an entry in `SENDERS`, and a
word in `ForwardConfig.type`.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.core.worker import Worker
from hub.config import ForwardConfig
from hub.forward.forwarder import Forwarder
from hub.store import Store

SENDERS: dict[str, Callable[[ForwardConfig, Store, Worker], Forwarder]] = {
    "prometheus_remote_write": Forwarder,
}


def forwarders(configs: tuple[ForwardConfig, ...], store: Store, worker: Worker) -> list[Forwarder]:
    """One forwarder per table; `worker` is the store's thread (cursor commits)."""
    return [SENDERS[c.type](c, store, worker) for c in configs]
