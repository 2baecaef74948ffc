"""webhook notifiers against a real aiohttp server on loopback: what a
request carries (the queue's behaviour: test_queue.py)."""

from __future__ import annotations

import asyncio
import json
import math

from structlog.testing import capture_logs

from agent.notifiers.payloads import alert_json
from agent.notifiers.routing import build_notifiers
from tests.agent.notifiers.common import Hook, hook_config, make_alert, queue_files, until
from tests.e2e.harness import free_port


def test_webhook_json_with_headers(tmp_path):
    hook = Hook(free_port())
    config = hook_config(hook, headers={"Authorization": "Bearer s3cret", "X-Team": "ops"})
    n = build_notifiers([config], tmp_path, "web-01")["hook"]

    async def main() -> None:
        await hook.start()
        await n.start()
        await n.send(make_alert(value=math.nan))
        await n.send(make_alert("resolved"))
        await until(lambda: len(hook.delivered) == 2, "two deliveries")
        await n.stop()
        await hook.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    assert hook.delivered == [
        alert_json(make_alert(value=math.nan)),
        make_alert("resolved").to_dict(),
    ]
    headers = hook.requests[0][0]
    assert headers["Authorization"] == "Bearer s3cret" and headers["X-Team"] == "ops"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("vigil/")
    assert queue_files(tmp_path) == []
    assert n.status()["sent"] == 2 and n.status()["queued"] == 0
    assert "s3cret" not in repr(logs) and "s3cret" not in json.dumps(n.status())


def test_webhook_slack_format(tmp_path):
    hook = Hook(free_port())
    n = build_notifiers([hook_config(hook, format="slack")], tmp_path, "web-01")["hook"]

    async def main() -> None:
        await hook.start()
        await n.start()
        await n.send(make_alert())
        await n.send(make_alert("resolved"))
        await until(lambda: len(hook.delivered) == 2, "two deliveries")
        await n.stop()
        await hook.stop()

    asyncio.run(main())
    assert hook.delivered == [
        {"text": "[FIRING] high HighCPUUsage on web-01: CPU at 94% on web-01 (HighCPUUsage)"},
        {"text": "[RESOLVED] high HighCPUUsage on web-01: CPU at 94% on web-01 (HighCPUUsage)"},
    ]
