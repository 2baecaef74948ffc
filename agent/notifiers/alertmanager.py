"""alertmanager: Prometheus Alertmanager's API v2, POST /api/v2/alerts with
a list, through the durable queue.

Alertmanager resolves an alert by itself `resolve_timeout` (5m by default)
after the last time it heard of it, so, as Prometheus does, this notifier
re-posts every alert it knows is firing every `resend_interval` while its
queue is empty (so a refresh never overtakes a queued resolution). That set
is kept in `STATE_DIR/notify/NAME/active.json` so it survives a restart.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.core.alert import Alert
from agent.core.atomic import write_atomically
from agent.core.schema import Duration, opt
from agent.notifiers.base import NOTIFIER_TYPES
from agent.notifiers.payloads import alert_json, alertmanager_alert
from agent.notifiers.queue import RemoteConfig, RemoteNotifier

log = structlog.get_logger()


@dataclass(frozen=True, kw_only=True)
class AlertmanagerConfig(RemoteConfig):
    resend_interval: Duration = opt(60.0, min=0.1)  # re-post firing alerts


@NOTIFIER_TYPES.register("alertmanager")
class AlertmanagerNotifier(RemoteNotifier[AlertmanagerConfig]):
    Config = AlertmanagerConfig
    path_suffix = "/api/v2/alerts"

    def __init__(
        self,
        config: AlertmanagerConfig,
        state_dir: Path,
        host: str,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(config, state_dir, host, rng)
        self.active: dict[str, dict[str, Any]] = {}  # fingerprint -> firing alert
        self.refreshed = 0.0  # loop time of the last post of the active set

    def render(self, alerts: Sequence[Mapping[str, Any]]) -> bytes:
        return json.dumps([alertmanager_alert(a) for a in alerts]).encode()

    async def start(self) -> None:
        self.active = await self.thread.run(_read_active, self.dir)
        await super().start()

    async def send(self, alert: Alert) -> None:
        if alert.state == "firing":
            self.active[alert.fingerprint] = alert_json(alert)
        else:
            self.active.pop(alert.fingerprint, None)
        await self._save_active()
        await super().send(alert)
        self.refreshed = asyncio.get_running_loop().time()

    async def _save_active(self) -> None:
        try:
            await self.thread.run(_write_active, self.dir, dict(self.active))
        except OSError as exc:
            self._error("notifier_state_failed", f"cannot save the firing alerts: {exc}")

    async def _refused(self, alert: Mapping[str, Any]) -> None:
        # Alertmanager will never take it: stop re-posting it too.
        if self.active.pop(str(alert.get("fingerprint")), None) is not None:
            await self._save_active()

    async def _idle(self) -> None:
        loop = asyncio.get_running_loop()
        due = self.refreshed + self.config.resend_interval - loop.time()
        if self.active and due <= 0:
            self.refreshed = loop.time()
            status, _, _ = await self._post(self.render(list(self.active.values())))
            if status is not None and not 200 <= status < 300:
                log.warning("notifier_refresh_refused", notifier=self.name, status=status)
            return
        # Not asyncio.wait_for: on 3.11 it can swallow a cancel (stop()) that
        # arrives as the event is set.
        timer = loop.call_later(due, self.wake.set) if self.active else None
        try:
            await self.wake.wait()
        finally:
            if timer is not None:
                timer.cancel()


def _read_active(directory: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((directory / "active.json").read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning(
            "notifier_state_unreadable", file=str(directory / "active.json"), error=str(exc)
        )
        return {}
    return (
        {str(k): v for k, v in data.items() if isinstance(v, dict)}
        if isinstance(data, dict)
        else {}
    )


def _write_active(directory: Path, active: dict[str, dict[str, Any]]) -> None:
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    write_atomically(directory / "active.json", json.dumps(active).encode())
