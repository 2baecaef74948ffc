"""Sending the daily report at `[hub.reports] daily_at` through the
notifiers named in `notify`, once per day, across restarts too.

Every TICK seconds (and at start) the hub compares its clock, in the
report's time zone, with `daily_at`. Once past it, if yesterday's report
has not been sent, it writes yesterday's date to DATA_DIR/reports.json
(atomically, fsynced) and only then builds and sends the report: a crash
in between loses that day's report rather than sending it twice. A hub
started after `daily_at` (or down at that time) sends it at start.
Nothing happens while `daily_at` is "" or `notify` is empty.

How a report goes through a notifier (they carry alerts, agent/core/alert.py):
an alert `DailyReport`, state firing, severity `info`, host "", labels
{alertname, severity, date}; its summary is the report's headline; its
annotations are `description` (the Markdown report) and `report` (the
JSON report, as text). So file, exec and a json webhook get all of it in
the alert JSON, a Slack webhook the headline, Alertmanager the headline
and both annotations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from agent.core.alert import Alert
from agent.notifiers.base import Notifier
from hub.config import ReportsSection
from hub.store import Reader

log = structlog.get_logger()
TICK = 20.0  # seconds between looks at the clock
STATE = "reports.json"
RULE = "DailyReport"


def last_sent(data_dir: Path) -> str | None:
    """The date of the last daily report sent (YYYY-MM-DD), if any."""
    try:
        state = json.loads((data_dir / STATE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("report_state_unreadable", path=str(data_dir / STATE), error=str(exc)[:200])
        return None
    value = state.get("daily_last_sent") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def due(cfg: ReportsSection, now: float, sent: str | None) -> dt.date | None:
    """The date whose report is due now, or None."""
    if not cfg.daily_at or not cfg.notify:
        return None
    from hub.reports.days import zone  # here: a hub that sends no report does not load it

    local = dt.datetime.fromtimestamp(now, zone(cfg.timezone))
    if local.strftime("%H:%M") < cfg.daily_at:
        return None
    day = local.date() - dt.timedelta(days=1)
    return day if sent is None or sent < day.isoformat() else None


def as_alert(report: dict[str, Any], now: float) -> Alert:
    """The report as the notification the notifiers send (see the module's docstring)."""
    from hub.reports.render import to_json, to_markdown

    return Alert(
        rule=RULE,
        state="firing",
        severity="info",
        labels={"alertname": RULE, "severity": "info", "date": report["date"]},
        summary=report["headline"],
        value=math.nan,
        starts_at=now,
        ends_at=None,
        host="",
        fingerprint=f"hub:{RULE}:{report['date']}",
        annotations={"description": to_markdown(report), "report": to_json(report)},
    )


class Schedule:
    def __init__(
        self,
        config: Callable[[], ReportsSection],
        data_dir: Path,
        read: Callable[[Callable[[Reader], Any]], Awaitable[Any]],
        notifiers: Mapping[str, Notifier[Any]],
        lead: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.lead = lead  # hubs sharing a store: only the one leading sends (Store.lead)
        self.config = config  # the running [hub.reports]: a reload takes effect at the next tick
        self.data_dir = data_dir
        self.read = read
        self.notifiers = notifiers
        self.first = True  # the first look logs the schedule

    async def run(self) -> None:
        self.first = True
        while True:
            try:
                if self.lead is None or await self.lead():
                    await self.check(time.time())
            except Exception as exc:  # logged; the next tick tries again
                log.error("daily_report_failed", error=repr(exc)[:300])
            await asyncio.sleep(TICK)

    async def check(self, now: float) -> bool:
        """Send the report if it is due; whether it was."""
        cfg = self.config()
        sent = await asyncio.to_thread(last_sent, self.data_dir)
        day = due(cfg, now, sent)
        if self.first:  # once at start: what the schedule is, and what it found
            self.first = False
            on = bool(cfg.daily_at and cfg.notify)
            log.info(
                "daily_report_schedule",
                daily_at=cfg.daily_at if on else "off",
                notify=list(cfg.notify),
                last_sent=sent,
                due=day.isoformat() if day else None,
            )
        if day is None:
            return False
        from agent.core.atomic import write_atomically
        from hub.reports.daily import daily  # here: the idle hub does not carry it
        from hub.reports.days import zone

        state = json.dumps({"daily_last_sent": day.isoformat(), "at": now}).encode()
        await asyncio.to_thread(write_atomically, self.data_dir / STATE, state, 0o600)
        tz = zone(cfg.timezone)
        target = cfg.availability_target
        report: dict[str, Any] = await self.read(lambda r: daily(r, day, tz, target, now))
        alert = await asyncio.to_thread(as_alert, report, now)
        names = []
        for name in cfg.notify:
            notifier = self.notifiers.get(name)
            if notifier is None:  # added by a reload: notifiers need a restart
                log.warning("daily_report_notifier_unknown", notifier=name)
                continue
            await notifier.send(alert)
            names.append(name)
        log.info("daily_report_sent", date=day.isoformat(), notifiers=names)
        return True
