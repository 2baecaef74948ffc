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

Each type module registers itself in NOTIFIER_TYPES; the lines below load
them, so importing anything of this package registers every type.
"""

from __future__ import annotations

from agent.notifiers import alertmanager as alertmanager
from agent.notifiers import exec as exec
from agent.notifiers import file as file
from agent.notifiers import journal as journal
from agent.notifiers import webhook as webhook
