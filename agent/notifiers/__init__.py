"""Notifiers: where an alert's transitions go. Local ones (journal, exec,
file) work with the network down and keep nothing across a restart; remote
ones (webhook, alertmanager) queue durably on disk and retry.

Imports only the base layer: the hub will send its alerts through the same
types.

- base.py       common keys, the NOTIFIER_TYPES registry, the interface, metrics
- payloads.py   an alert as JSON, env variables, Slack text, Alertmanager v2
- queue.py      the durable queue and sender loop of remote notifiers
- routing.py    who gets an alert; building notifiers from the config
- journal.py, exec.py, file.py, webhook.py, alertmanager.py: one type each

Each type module registers itself in NOTIFIER_TYPES when imported; the
line below names them, and a type's module is imported the first time a
config or the routing looks it up: an agent with no webhook loads no
webhook code (docs/operations.md, "Footprint").
"""

from __future__ import annotations

from agent.notifiers.base import NOTIFIER_TYPES

for _name in ("alertmanager", "exec", "file", "journal", "webhook"):
    NOTIFIER_TYPES.lazy(_name, f"agent.notifiers.{_name}")
