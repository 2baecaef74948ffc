"""Routing: who gets an alert, and the notifiers built from the config.

The engine hands an alert to `route()`: the journal always, the notifiers
the rule names in `notify = [...]`, and every notifier whose `severities`
include the alert's; each once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.core.alert import Alert
from agent.notifiers.base import NOTIFIER_TYPES, Notifier, NotifierConfig
from agent.notifiers.journal import JournalConfig, JournalNotifier


def build_notifiers(
    configs: Sequence[NotifierConfig], state_dir: Path, host: str
) -> dict[str, Notifier[Any]]:
    """One notifier per config, plus "journal" when not configured. Not started."""
    out: dict[str, Notifier[Any]] = {}
    if not any(c.name == "journal" for c in configs):
        journal = JournalConfig(name="journal", type="journal")
        out["journal"] = JournalNotifier(journal, state_dir, host)
    for c in configs:
        if c.name in out:
            raise ValueError(f"two notifiers are named {c.name!r}")
        out[c.name] = NOTIFIER_TYPES[c.type](c, state_dir, host)
    return out


def route(
    alert: Alert, notify: Sequence[str], notifiers: Mapping[str, Notifier[Any]]
) -> list[Notifier[Any]]:
    """Who gets `alert`: the journal, the rule's `notify` names, and every
    notifier whose `severities` include the alert's; each once."""
    chosen: dict[str, Notifier[Any]] = {}
    for name in ("journal", *notify):
        if name in notifiers:
            chosen.setdefault(name, notifiers[name])
    for name, n in notifiers.items():
        if alert.severity in n.config.severities:
            chosen.setdefault(name, n)
    return list(chosen.values())
