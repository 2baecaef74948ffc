"""exec notifiers, driven for real: shell scripts as commands, their
process groups, concurrency, rate limits."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from agent.notifiers import exec as exec_module
from agent.notifiers.base import STOP_GRACE
from agent.notifiers.exec import ExecConfig, ExecNotifier
from tests.agent.notifiers.common import cfg, make_alert, until
from tests.conftest import wait_for


def exec_notifier(config: ExecConfig, **extra: Any) -> ExecNotifier:
    return ExecNotifier(config, Path("/nonexistent"), "web-01", **extra)


def pid_gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody reaped yet."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return text.rsplit(")", 1)[1].split()[0] in ("Z", "X")


MARKER = """#!/bin/sh
# writes what it was given next to $1
cat > "$1.stdin"
env | grep '^VIGIL_ALERT_' | sort > "$1.env"
"""


def test_exec_gets_the_alert_as_json_on_stdin_and_in_env(tmp_path):
    script = tmp_path / "notify.sh"
    script.write_text(MARKER)
    script.chmod(0o755)
    out = tmp_path / "marker"
    n = exec_notifier(cfg(name="x", type="exec", command=[str(script), str(out)]))

    async def main() -> None:
        await n.start()
        await n.send(make_alert(value=math.nan, repeat=True))
        await until(lambda: n.status()["sent"] == 1, "the command to finish")
        await n.stop()

    asyncio.run(main())
    given = json.loads((tmp_path / "marker.stdin").read_text())
    assert given == {**make_alert(repeat=True).to_dict(), "value": None}
    env = dict(line.split("=", 1) for line in (tmp_path / "marker.env").read_text().splitlines())
    assert env == {
        "VIGIL_ALERT_NAME": "HighCPUUsage",
        "VIGIL_ALERT_STATE": "firing",
        "VIGIL_ALERT_SEVERITY": "high",
        "VIGIL_ALERT_SUMMARY": "CPU at 94% on web-01 (HighCPUUsage)",
        "VIGIL_ALERT_VALUE": "",
        "VIGIL_ALERT_HOST": "web-01",
        "VIGIL_ALERT_FINGERPRINT": "f00dcafe",
        "VIGIL_ALERT_LABELS": '{"alertname": "HighCPUUsage", "cpu": "all", "host": "web-01"}',
        "VIGIL_ALERT_REPEAT": "true",
    }
    assert n.status() == {
        "type": "exec",
        "sent": 1,
        "failed": 0,
        "dropped": 0,
        "queued": 0,
        "last_error": None,
        "running": 0,
        "rate_limited": 0,
    }


def test_exec_value_and_resolution_in_env(tmp_path):
    script = tmp_path / "notify.sh"
    script.write_text(MARKER)
    script.chmod(0o755)
    n = exec_notifier(cfg(name="x", type="exec", command=[str(script), str(tmp_path / "m")]))

    async def main() -> None:
        await n.send(make_alert("resolved", value=61.25))
        await until(lambda: n.status()["sent"] == 1, "the command to finish")
        await n.stop()

    asyncio.run(main())
    env = (tmp_path / "m.env").read_text()
    assert "VIGIL_ALERT_STATE=resolved\n" in env and "VIGIL_ALERT_VALUE=61.25\n" in env
    assert json.loads((tmp_path / "m.stdin").read_text())["ends_at"] == 1_700_000_600.0


def test_exec_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    # the command starts a child and waits for it: both must die at the timeout
    command = ["sh", "-c", 'sleep 1000 & echo $! > "$0"; wait', str(pidfile)]
    n = exec_notifier(cfg(name="x", type="exec", command=command, timeout="500ms"))

    async def main() -> float:
        t0 = time.monotonic()
        await n.send(make_alert())
        await until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the child")
        await until(lambda: n.status()["failed"] == 1, "the timeout")
        took = time.monotonic() - t0
        await n.stop()
        return took

    with capture_logs() as logs:
        took = asyncio.run(main())
    child = int(pidfile.read_text())
    wait_for(lambda: pid_gone(child), timeout=5, what=f"child {child} to be killed")
    assert 0.4 < took < 5
    assert "timed out after 0.5s" in (n.status()["last_error"] or "")
    assert any(e["event"] == "notifier_exec_failed" for e in logs)


def test_exec_stop_kills_a_running_command_and_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    command = ["sh", "-c", 'sleep 1000 & echo $! > "$0"; wait', str(pidfile)]
    n = exec_notifier(cfg(name="x", type="exec", command=command, timeout="1h"))

    async def main() -> float:
        await n.send(make_alert())
        await until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the child")
        t0 = time.monotonic()
        await n.stop()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < STOP_GRACE + 2
    child = int(pidfile.read_text())
    wait_for(lambda: pid_gone(child), timeout=5, what=f"child {child} to be killed")


def test_exec_failure_is_logged_and_counted_with_its_output(tmp_path):
    command = ["sh", "-c", "echo 'unit app.service not found' >&2; exit 5"]
    n = exec_notifier(cfg(name="restart", type="exec", command=command))

    async def main() -> None:
        await n.send(make_alert())
        await n.send(make_alert())
        await until(lambda: n.status()["failed"] == 2, "two failed runs")
        await n.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    assert n.status()["sent"] == 0 and n.status()["last_error"] == "exited with status 5"
    failed = [e for e in logs if e["event"] == "notifier_exec_failed"]
    assert failed[0]["output"] == "unit app.service not found"
    assert failed[0]["notifier"] == "restart"


def test_exec_missing_program_is_a_counted_failure(tmp_path):
    n = exec_notifier(cfg(name="x", type="exec", command=[str(tmp_path / "nope")]))

    async def main() -> None:
        await n.send(make_alert())
        await until(lambda: n.status()["failed"] == 1, "the failure")
        await n.stop()

    asyncio.run(main())
    assert "cannot run" in (n.status()["last_error"] or "")


HOLD = """#!/bin/sh
# $1: a directory. Marks itself running, records how many run, waits for "release".
touch "$1/running/$$"
ls "$1/running" | wc -l >> "$1/counts"
while [ ! -e "$1/release" ]; do sleep 0.02; done
rm "$1/running/$$"
"""


def hold_script(tmp_path: Path) -> Path:
    script = tmp_path / "hold.sh"
    script.write_text(HOLD)
    script.chmod(0o755)
    (tmp_path / "running").mkdir()
    return script


def test_exec_runs_at_most_max_concurrent_at_once(tmp_path):
    script = hold_script(tmp_path)
    n = exec_notifier(
        cfg(name="x", type="exec", command=[str(script), str(tmp_path)], max_concurrent=2)
    )
    running = lambda: len(os.listdir(tmp_path / "running"))  # noqa: E731

    async def main() -> None:
        for i in range(5):
            await n.send(make_alert(fingerprint=str(i)))
        await until(lambda: running() == 2, "two runs")
        assert n.status()["running"] == 2 and n.status()["queued"] == 3
        (tmp_path / "release").touch()
        await until(lambda: n.status()["sent"] == 5, "all five runs")
        await n.stop()

    asyncio.run(main())
    counts = [int(c) for c in (tmp_path / "counts").read_text().split()]
    assert len(counts) == 5 and max(counts) == 2


def test_exec_queue_is_bounded_and_drops_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(exec_module, "EXEC_MAX_WAITING", 3)
    script = hold_script(tmp_path)
    n = exec_notifier(
        cfg(name="x", type="exec", command=[str(script), str(tmp_path)], max_concurrent=1)
    )

    async def main() -> None:
        await n.send(make_alert())
        await until(lambda: n.status()["running"] == 1, "the first run")
        for _ in range(5):
            await n.send(make_alert())
        assert n.status()["queued"] == 3 and n.status()["dropped"] == 2
        (tmp_path / "release").touch()
        await until(lambda: n.status()["sent"] == 4, "the four accepted runs")
        await n.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    assert sum(e["event"] == "notifier_queue_full" for e in logs) == 2


def test_exec_rate_limit_per_hour(tmp_path):
    now = [1000.0]
    runs = tmp_path / "runs"
    command = ["sh", "-c", 'echo "$VIGIL_ALERT_FINGERPRINT" >> "$0"', str(runs)]
    n = exec_notifier(
        cfg(name="x", type="exec", command=command, max_per_hour=3, max_concurrent=1),
        clock=lambda: now[0],
    )

    async def main() -> None:
        for i in range(5):
            await n.send(make_alert(fingerprint=f"a{i}"))
            now[0] += 60
        await until(lambda: n.status()["sent"] == 3, "three runs")
        assert n.status()["rate_limited"] == 2
        now[0] = 1000.0 + 3600  # the first run is an hour old: one more may start
        await n.send(make_alert(fingerprint="b0"))
        await n.send(make_alert(fingerprint="b1"))
        await until(lambda: n.status()["sent"] == 4, "the fourth run")
        await n.stop()

    with capture_logs() as logs:
        asyncio.run(main())
    assert runs.read_text().split() == ["a0", "a1", "a2", "b0"]
    assert n.status()["rate_limited"] == 3
    limited = [e for e in logs if e["event"] == "notifier_rate_limited"]
    assert len(limited) == 3 and limited[0]["max_per_hour"] == 3


def test_resolved_false_skips_resolutions(tmp_path):
    runs = tmp_path / "runs"
    command = ["sh", "-c", 'echo "$VIGIL_ALERT_STATE" >> "$0"', str(runs)]
    n = exec_notifier(cfg(name="x", type="exec", command=command, resolved=False))

    async def main() -> None:
        await n.send(make_alert("resolved"))
        await n.send(make_alert("firing"))
        await until(lambda: n.status()["sent"] == 1, "one run")
        await n.stop()

    asyncio.run(main())
    assert runs.read_text() == "firing\n"
