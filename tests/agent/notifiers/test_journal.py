"""The journal notifier: one structlog line per notification."""

from __future__ import annotations

import asyncio
import math

from structlog.testing import capture_logs

from agent.notifiers.routing import build_notifiers
from tests.agent.notifiers.common import make_alert


def test_journal_logs_one_alert_line_with_the_alerts_fields(tmp_path):
    journal = build_notifiers([], tmp_path, "web-01")["journal"]

    async def main() -> None:
        await journal.start()
        await journal.send(make_alert(value=math.nan))
        await journal.send(make_alert("resolved"))
        await journal.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    firing, resolved = [e for e in logs if e["event"] == "alert"]
    assert firing["log_level"] == "warning" and resolved["log_level"] == "info"
    assert firing["rule"] == "HighCPUUsage" and firing["state"] == "firing"
    assert firing["severity"] == "high" and firing["host"] == "web-01"
    assert firing["labels"] == {"alertname": "HighCPUUsage", "host": "web-01", "cpu": "all"}
    assert firing["value"] is None  # NaN: no value, and the JSON log line stays valid
    assert resolved["ends_at"] == 1_700_000_600.0
    assert journal.status()["sent"] == 2
