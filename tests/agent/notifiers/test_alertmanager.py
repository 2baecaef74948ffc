"""The alertmanager notifier's resend of firing alerts, against an aiohttp
server on loopback (the real Alertmanager: tests/e2e/test_alertmanager.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from agent.notifiers.alertmanager import AlertmanagerNotifier
from agent.notifiers.routing import build_notifiers
from tests.agent.notifiers.common import cfg, make_alert, until
from tests.e2e.harness import free_port


async def receiver(port: int, received: list[list[dict[str, Any]]]) -> web.AppRunner:
    """Alertmanager's POST /api/v2/alerts on loopback: each body into `received`."""

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/v2/alerts", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def test_alertmanager_resends_firing_alerts_until_resolved(tmp_path):
    """Alertmanager forgets an alert resolve_timeout after the last post, so
    firing ones are re-posted; the set survives a restart."""
    received: list[list[dict[str, Any]]] = []
    port = free_port()
    config = cfg(
        name="am", type="alertmanager", url=f"http://127.0.0.1:{port}", resend_interval="200ms"
    )

    async def main() -> None:
        runner = await receiver(port, received)
        n = build_notifiers([config], tmp_path, "web-01")["am"]
        assert isinstance(n, AlertmanagerNotifier)
        await n.start()
        await n.send(make_alert(fingerprint="cpu"))
        await n.send(make_alert(rule="DiskFull", fingerprint="disk"))
        await until(lambda: n.status()["queued"] == 0, "both delivered")
        mark = len(received)
        await until(lambda: len(received) >= mark + 2, "refreshes")
        assert all(len(post) == 2 for post in received[mark:])  # both, in one request
        await n.stop()
        # a new process re-announces what is firing right away
        received.clear()
        n = build_notifiers([config], tmp_path, "web-01")["am"]
        await n.start()
        await until(lambda: received, "the re-announcement")
        assert {a["labels"]["alertname"] for a in received[0]} == {"HighCPUUsage", "DiskFull"}
        await n.send(make_alert("resolved", fingerprint="cpu"))
        await until(
            lambda: any(len(p) == 1 and "endsAt" in p[0] for p in received), "the resolution"
        )
        mark = len(received)
        await until(lambda: len(received) >= mark + 2, "refreshes after the resolution")
        assert all(
            [a["labels"]["alertname"] for a in post] == ["DiskFull"] for post in received[mark:]
        )
        await n.stop()
        await runner.cleanup()

    asyncio.run(main())


# As the agent before agent/notifiers/ wrote them (agent/alerts/notifiers.py).
OLD_ALERT = (
    '{"rule": "DiskFull", "state": "firing", "severity": "high", "labels": {"alertname": '
    '"DiskFull", "host": "web-01", "mount": "/"}, "summary": "/ is full", "value": 97.5, '
    '"starts_at": 1700000000.0, "ends_at": null, "host": "web-01", "fingerprint": "d15c", '
    '"repeat": false, "annotations": {}}'
)


def test_state_written_by_the_previous_layout_is_resumed(tmp_path):
    """A queued item (notify/NAME/<seq>.json) and the firing set (active.json)
    left by an older agent: the item is delivered, the set re-announced."""
    queue = tmp_path / "notify" / "am"
    queue.mkdir(parents=True)
    (queue / "00000000000000000007.json").write_text(
        f'{{"queued_at": 1700000001.25, "alert": {OLD_ALERT}}}'
    )
    (queue / "active.json").write_text(f'{{"d15c": {OLD_ALERT}}}')
    received: list[list[dict[str, Any]]] = []
    port = free_port()
    config = cfg(
        name="am", type="alertmanager", url=f"http://127.0.0.1:{port}", resend_interval="1h"
    )

    async def main() -> None:
        runner = await receiver(port, received)
        n = build_notifiers([config], tmp_path, "web-01")["am"]
        await n.start()
        assert n.status()["queued"] == 1
        await until(lambda: len(received) >= 2, "the queued item and the re-announcement")
        await n.send(make_alert(fingerprint="cpu"))
        await until(lambda: len(received) >= 3, "a new item")
        await n.stop()
        await runner.cleanup()

    asyncio.run(main())
    expected = {
        "labels": {"alertname": "DiskFull", "host": "web-01", "mount": "/", "severity": "high"},
        "annotations": {"summary": "/ is full"},
        "startsAt": "2023-11-14T22:13:20.000Z",
    }
    assert received[:2] == [[expected], [expected]]
    assert sorted(p.name for p in queue.iterdir()) == ["active.json"]  # all delivered
    assert set(json.loads((queue / "active.json").read_text())) == {"d15c", "cpu"}
