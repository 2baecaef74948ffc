"""file notifiers: JSON lines appended to a real file."""

from __future__ import annotations

import asyncio
import json
import math
import stat

from agent.notifiers.payloads import alert_json
from agent.notifiers.routing import build_notifiers
from tests.agent.notifiers.common import cfg, make_alert, until


def test_file_appends_one_json_line_per_notification(tmp_path):
    path = tmp_path / "log" / "alerts.jsonl"
    configs = [cfg(name="local", type="file", path=str(path))]
    n = build_notifiers(configs, tmp_path / "state", "web-01")["local"]

    async def main() -> None:
        await n.start()
        for i in range(20):
            await n.send(make_alert(fingerprint=str(i), value=math.nan if i == 0 else i))
        await n.send(make_alert("resolved", fingerprint="last"))
        await until(lambda: n.status()["sent"] == 21, "21 lines")
        await n.stop()

    asyncio.run(main())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["fingerprint"] for x in lines] == [*map(str, range(20)), "last"]
    assert lines[0]["value"] is None and lines[1]["value"] == 1
    assert lines[-1] == alert_json(make_alert("resolved", fingerprint="last"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # appended, not rewritten: a second notifier object adds to the same file
    n2 = build_notifiers(configs, tmp_path / "state", "web-01")["local"]

    async def again() -> None:
        await n2.send(make_alert(fingerprint="next"))
        await n2.stop()

    asyncio.run(again())
    assert len(path.read_text().splitlines()) == 22


def test_file_write_failure_is_counted(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    n = build_notifiers(
        [cfg(name="local", type="file", path=str(tmp_path / "blocker" / "alerts.jsonl"))],
        tmp_path,
        "h",
    )["local"]

    async def main() -> None:
        await n.send(make_alert())
        await until(lambda: n.status()["failed"] == 1, "the failed write")
        await n.stop()

    asyncio.run(main())
    assert n.status()["last_error"]
