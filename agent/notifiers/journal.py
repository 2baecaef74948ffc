"""journal: one structlog line, event="alert", with the alert's fields.
journald keeps it, and it needs nothing else: it works with the network
down and is always there (routing adds one named "journal" when none is
configured)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.core.alert import Alert
from agent.notifiers.base import NOTIFIER_TYPES, Notifier, NotifierConfig
from agent.notifiers.payloads import alert_json

log = structlog.get_logger()


@dataclass(frozen=True, kw_only=True)
class JournalConfig(NotifierConfig):
    pass


@NOTIFIER_TYPES.register("journal")
class JournalNotifier(Notifier[JournalConfig]):
    Config = JournalConfig

    def __init__(self, config: JournalConfig, state_dir: Path, host: str) -> None:
        super().__init__(config, state_dir, host)
        self.host = host

    async def send(self, alert: Alert) -> None:
        if not self.wants(alert):
            return
        fields = alert_json(alert)
        fields["host"] = fields["host"] or self.host
        emit = log.warning if alert.state == "firing" else log.info
        emit("alert", **fields)
        self.sent += 1
