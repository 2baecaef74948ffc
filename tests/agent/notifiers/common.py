"""What the notifier tests share: an alert, a config built the way the
agent's config builds one, a deadline wait that keeps the loop running, and
a real aiohttp server on loopback that records what it got."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web

from agent.core.alert import Alert
from agent.core.schema import OneOf, build
from agent.notifiers.base import NOTIFIER_TYPES, NotifierConfig
from tests.conftest import wait_for


@dataclass(frozen=True)
class Section:
    notifiers: tuple[Annotated[NotifierConfig, OneOf(NOTIFIER_TYPES)], ...] = ()


def make_alert(
    state: str = "firing",
    rule: str = "HighCPUUsage",
    severity: str = "high",
    value: float = 93.5,
    fingerprint: str = "f00dcafe",
    repeat: bool = False,
) -> Alert:
    return Alert(
        rule=rule,
        state=state,  # type: ignore[arg-type]
        severity=severity,
        labels={"alertname": rule, "host": "web-01", "cpu": "all"},
        summary=f"CPU at 94% on web-01 ({rule})",
        value=value,
        starts_at=1_700_000_000.0,
        ends_at=1_700_000_600.0 if state == "resolved" else None,
        host="web-01",
        fingerprint=fingerprint,
        repeat=repeat,
        annotations={"runbook": "https://runbooks.example/cpu"},
    )


def cfg(**data: Any) -> Any:
    """One [[notifiers]] table, checked as agent.toml's are: errors name notifiers[0]."""
    return build(Section, {"notifiers": [data]}, "test.toml").notifiers[0]


async def until(condition: Any, what: str, timeout: float = 10.0) -> Any:
    """tests.conftest.wait_for, off the loop so the notifiers keep running."""
    return await asyncio.to_thread(wait_for, condition, timeout, what)


class Hook:
    """An aiohttp server that records every request and answers from `answers`
    (then 200)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.requests: list[tuple[dict[str, str], Any, int]] = []
        self.answers: list[int] = []
        self.runner: web.AppRunner | None = None

    @property
    def delivered(self) -> list[Any]:
        return [body for _, body, status in self.requests if status == 200]

    async def handle(self, request: web.Request) -> web.Response:
        status = self.answers.pop(0) if self.answers else 200
        self.requests.append((dict(request.headers), await request.json(), status))
        headers = {"Retry-After": "1"} if status == 503 else {}
        return web.Response(status=status, text=f"answer {status}", headers=headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def hook_config(hook: Hook, **extra: Any) -> Any:
    return cfg(name="hook", type="webhook", url=hook.url, max_backoff="100ms", **extra)


def queue_files(state: Path, name: str = "hook") -> list[str]:
    return sorted(p.name for p in (state / "notify" / name).glob("*.json"))
