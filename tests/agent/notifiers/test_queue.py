"""The durable queue of remote notifiers, through a webhook and a real
aiohttp server on loopback: down, up, refusing; restarts; what survives on
disk (STATE_DIR/notify/NAME/<20-digit seq>.json)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.core.alert import Alert
from agent.notifiers.payloads import alert_json
from agent.notifiers.queue import read_item
from agent.notifiers.routing import build_notifiers
from tests.agent.notifiers.common import Hook, hook_config, make_alert, queue_files, until
from tests.e2e.harness import free_port


def test_queue_survives_the_server_down_and_a_restart(tmp_path):
    hook = Hook(free_port())
    config = hook_config(hook)

    async def while_down() -> None:
        n = build_notifiers([config], tmp_path, "web-01")["hook"]
        await n.start()
        await n.send(make_alert(fingerprint="one"))
        # durable when send returns: the file is there already
        assert queue_files(tmp_path) == ["00000000000000000001.json"]
        await n.send(make_alert("resolved", fingerprint="one"))
        await until(lambda: n.status()["retries"] >= 2, "retries while the server is down")
        assert "unreachable" in (n.status()["last_error"] or "")
        assert n.status()["queued"] == 2 and n.status()["sent"] == 0
        t0 = time.monotonic()
        await n.stop()
        assert time.monotonic() - t0 < 1.0  # the server is away: stop does not wait for it

    async def back_up() -> None:
        await hook.start()
        n = build_notifiers([config], tmp_path, "web-01")["hook"]
        await n.start()
        assert n.status()["queued"] == 2
        await until(lambda: n.status()["queued"] == 0, "the queue delivered")
        await n.send(make_alert(fingerprint="two"))
        await until(lambda: len(hook.delivered) == 3, "the new one")
        await n.stop()
        await hook.stop()

    asyncio.run(while_down())
    assert queue_files(tmp_path) == ["00000000000000000001.json", "00000000000000000002.json"]
    asyncio.run(back_up())
    assert [(a["fingerprint"], a["state"]) for a in hook.delivered] == [
        ("one", "firing"),
        ("one", "resolved"),
        ("two", "firing"),
    ]
    assert len(hook.requests) == 3  # each once
    assert queue_files(tmp_path) == []


def test_4xx_drops_5xx_and_429_retry_in_order(tmp_path):
    hook = Hook(free_port())
    hook.answers = [400, 503, 429, 500, 200, 404]
    n = build_notifiers([hook_config(hook)], tmp_path, "web-01")["hook"]

    async def main() -> None:
        await hook.start()
        await n.start()
        for name in ("bad", "flaky", "gone", "fine"):
            await n.send(make_alert(fingerprint=name))
        await until(lambda: n.status()["queued"] == 0, "the queue worked through")
        await n.stop()
        await hook.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    seen = [(body["fingerprint"], status) for _, body, status in hook.requests]
    assert seen == [
        ("bad", 400),
        ("flaky", 503),
        ("flaky", 429),
        ("flaky", 500),
        ("flaky", 200),
        ("gone", 404),
        ("fine", 200),
    ]
    st = n.status()
    assert (st["sent"], st["dropped"], st["failed"], st["retries"]) == (2, 2, 3, 3)
    refused = [e for e in logs if e["event"] == "notifier_refused"]
    assert len(refused) == 2 and "answered 400" in refused[0]["error"]


def test_queue_is_bounded_oldest_dropped(tmp_path):
    hook = Hook(free_port())
    config = hook_config(hook, max_queued=3)

    async def main() -> None:
        n = build_notifiers([config], tmp_path, "web-01")["hook"]
        await n.start()
        for i in range(5):
            await n.send(make_alert(fingerprint=str(i)))
        assert n.status()["queued"] == 3 and n.status()["dropped"] == 2
        assert len(queue_files(tmp_path)) == 3
        await n.stop()
        await hook.start()
        n = build_notifiers([config], tmp_path, "web-01")["hook"]
        await n.start()
        await until(lambda: n.status()["queued"] == 0, "the queue delivered")
        await n.stop()
        await hook.stop()

    asyncio.run(main())
    assert [a["fingerprint"] for a in hook.delivered] == ["2", "3", "4"]


def write_item(directory: Path, seq: int, alert: Alert) -> None:
    body = {"queued_at": time.time(), "alert": alert_json(alert)}
    (directory / f"{seq:020d}.json").write_text(json.dumps(body))


def test_queue_corruption_and_partial_writes(tmp_path):
    """What survives on disk: whole items, in order; a corrupt item is dropped
    and counted, a partial write (temporary file) removed, foreign files kept."""
    hook = Hook(free_port())
    queue = tmp_path / "notify" / "hook"
    queue.mkdir(parents=True)
    write_item(queue, 1, make_alert(fingerprint="a"))
    good = (queue / f"{1:020d}.json").read_bytes()
    (queue / f"{2:020d}.json").write_bytes(good[: len(good) // 2])  # cut mid-item
    (queue / f"{3:020d}.json").write_bytes(b"\x00" * 40)  # zeroed
    (queue / f"{4:020d}.json").write_text('["not", "an", "item"]')
    (queue / f"{5:020d}.json.tmp").write_bytes(good[:10])  # a crash mid-write
    write_item(queue, 6, make_alert(fingerprint="b"))
    (queue / "README").write_text("not ours")

    async def main() -> None:
        await hook.start()
        n = build_notifiers([hook_config(hook)], tmp_path, "web-01")["hook"]
        await n.start()
        await until(lambda: n.status()["queued"] == 0, "the queue worked through")
        await n.send(make_alert(fingerprint="c"))
        assert queue_files(tmp_path) in ([], ["00000000000000000007.json"])
        await until(lambda: n.status()["sent"] == 3, "the new item")
        assert n.status()["dropped"] == 3
        await n.stop()
        await hook.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    assert [a["fingerprint"] for a in hook.delivered] == ["a", "b", "c"]
    assert sorted(p.name for p in queue.iterdir()) == ["README"]
    assert sum(e["event"] == "notifier_queue_item_corrupt" for e in logs) == 3


def test_every_truncation_of_a_queue_item_is_refused(tmp_path):
    write_item(tmp_path, 1, make_alert())
    data = (tmp_path / f"{1:020d}.json").read_bytes()
    assert read_item(tmp_path, 1)["alert"]["rule"] == "HighCPUUsage"
    for cut in range(len(data)):
        (tmp_path / f"{1:020d}.json").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            read_item(tmp_path, 1)
