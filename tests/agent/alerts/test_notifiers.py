"""Notifiers, driven for real: shell scripts as exec commands, real files,
a real aiohttp server on loopback for webhooks (down, up, refusing)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from agent.alerts import notifiers
from agent.alerts.notifiers import (
    AlertmanagerNotifier,
    ExecNotifier,
    NotifierConfig,
    alert_json,
    alertmanager_alert,
    build_notifiers,
    check_notifiers,
    route,
)
from agent.core.alert import Alert
from agent.core.schema import ConfigError, build
from tests.conftest import wait_for
from tests.e2e.harness import free_port


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


def cfg(**data: Any) -> NotifierConfig:
    return build(NotifierConfig, data, "test.toml")


async def until(condition: Any, what: str, timeout: float = 10.0) -> Any:
    """tests.conftest.wait_for, off the loop so the notifiers keep running."""
    return await asyncio.to_thread(wait_for, condition, timeout, what)


def pid_gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody reaped yet."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return text.rsplit(")", 1)[1].split()[0] in ("Z", "X")


# -- configuration -----------------------------------------------------------------------


def test_defaults():
    c = cfg(name="ops", type="webhook", url="https://hooks.example/x")
    assert c.severities == () and c.resolved is True
    assert (c.timeout, c.max_backoff, c.max_queued, c.format) == (10.0, 300.0, 10_000, "json")
    e = cfg(name="restart-app", type="exec", command=["/usr/local/bin/restart-app"])
    assert (e.max_concurrent, e.max_per_hour, e.timeout) == (2, 20, 10.0)
    assert cfg(name="am", type="alertmanager", url="http://127.0.0.1:9093").resend_interval == 60


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "journal"}, "test.toml: name: required"),
        ({"name": "x", "type": "pager"}, "test.toml: type: expected one of 'journal'"),
        ({"name": "a/b", "type": "journal"}, "test.toml: name: must be 1 to 64 letters"),
        ({"name": "x", "type": "exec"}, 'test.toml: command: type "exec" needs command'),
        ({"name": "x", "type": "exec", "command": [""]}, "test.toml: command: the program"),
        ({"name": "x", "type": "file"}, 'test.toml: path: type "file" needs path'),
        ({"name": "x", "type": "webhook"}, 'test.toml: url: type "webhook" needs url'),
        ({"name": "x", "type": "alertmanager"}, 'test.toml: url: type "alertmanager" needs url'),
        (
            {"name": "x", "type": "webhook", "url": "ftp://h/x"},
            "test.toml: url: expected an http:// or https:// URL",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h/x", "command": ["true"]},
            'test.toml: command: applies to type "exec", not "webhook"',
        ),
        (
            {"name": "x", "type": "alertmanager", "url": "http://h", "format": "slack"},
            'test.toml: format: applies to type "webhook", not "alertmanager"',
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "path": "/tmp/x"},
            'test.toml: path: applies to type "file", not "exec"',
        ),
        (
            {"name": "x", "type": "journal", "severities": ["high", "urgent"]},
            "test.toml: severities[1]: expected one of critical, high, medium, low",
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "max_concurrent": 0},
            "test.toml: max_concurrent: must be at least 1",
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "timeout": 5},
            "test.toml: timeout: expected a duration",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h/x", "format": "teams"},
            "test.toml: format: expected one of 'json', 'slack'",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h/x", "headers": {"A": "b\nc"}},
            "test.toml: headers: header 'A'",
        ),
        (
            {"name": "x", "type": "journal", "comand": ["x"]},
            'comand: unknown key (did you mean "command"?)',
        ),
    ],
)
def test_config_errors_name_the_key(data, expected):
    with pytest.raises(ConfigError) as err:
        cfg(**data)
    assert expected in str(err.value)


def test_notifier_names_are_unique_and_journal_is_reserved():
    hook = cfg(name="ops", type="webhook", url="http://h/x")
    assert check_notifiers([hook]) is None
    assert "two notifiers are named 'ops'" in (check_notifiers([hook, hook]) or "")
    fake = cfg(name="journal", type="file", path="/tmp/x")
    assert "journal" in (check_notifiers([fake]) or "")


# -- building, routing, journal -------------------------------------------------------


def test_build_always_has_the_journal_and_routes_by_name_and_severity(tmp_path):
    configs = [
        cfg(name="restart-app", type="exec", command=["true"]),
        cfg(name="pager", type="webhook", url="http://h/x", severities=["critical"]),
        cfg(
            name="log", type="file", path=str(tmp_path / "a.jsonl"), severities=["critical", "high"]
        ),
    ]
    built = build_notifiers(configs, tmp_path, "web-01")
    assert list(built) == ["journal", "restart-app", "pager", "log"]
    names = lambda alert, notify: [n.name for n in route(alert, notify, built)]  # noqa: E731
    assert names(make_alert(severity="low"), []) == ["journal"]
    assert names(make_alert(severity="low"), ["restart-app"]) == ["journal", "restart-app"]
    assert names(make_alert(severity="high"), ["restart-app", "log"]) == [
        "journal",
        "restart-app",
        "log",
    ]
    assert names(make_alert(severity="critical"), []) == ["journal", "pager", "log"]
    # a configured journal replaces the built-in one
    own = build_notifiers([cfg(name="journal", type="journal", resolved=False)], tmp_path, "h")
    assert list(own) == ["journal"] and own["journal"].config.resolved is False


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


# -- exec -------------------------------------------------------------------------------


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
    n = ExecNotifier(cfg(name="x", type="exec", command=[str(script), str(out)]))

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
    n = ExecNotifier(cfg(name="x", type="exec", command=[str(script), str(tmp_path / "m")]))

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
    n = ExecNotifier(cfg(name="x", type="exec", command=command, timeout="500ms"))

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
    n = ExecNotifier(cfg(name="x", type="exec", command=command, timeout="1h"))

    async def main() -> float:
        await n.send(make_alert())
        await until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the child")
        t0 = time.monotonic()
        await n.stop()
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < notifiers.STOP_GRACE + 2
    child = int(pidfile.read_text())
    wait_for(lambda: pid_gone(child), timeout=5, what=f"child {child} to be killed")


def test_exec_failure_is_logged_and_counted_with_its_output(tmp_path):
    command = ["sh", "-c", "echo 'unit app.service not found' >&2; exit 5"]
    n = ExecNotifier(cfg(name="restart", type="exec", command=command))

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
    n = ExecNotifier(cfg(name="x", type="exec", command=[str(tmp_path / "nope")]))

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
    n = ExecNotifier(
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
    monkeypatch.setattr(notifiers, "EXEC_MAX_WAITING", 3)
    script = hold_script(tmp_path)
    n = ExecNotifier(
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
    n = ExecNotifier(
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
    n = ExecNotifier(cfg(name="x", type="exec", command=command, resolved=False))

    async def main() -> None:
        await n.send(make_alert("resolved"))
        await n.send(make_alert("firing"))
        await until(lambda: n.status()["sent"] == 1, "one run")
        await n.stop()

    asyncio.run(main())
    assert runs.read_text() == "firing\n"


# -- file -------------------------------------------------------------------------------


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


# -- webhook: a real server on loopback ------------------------------------------------------


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


def hook_config(hook: Hook, **extra: Any) -> NotifierConfig:
    return cfg(name="hook", type="webhook", url=hook.url, max_backoff="100ms", **extra)


def queue_files(state: Path, name: str = "hook") -> list[str]:
    return sorted(p.name for p in (state / "notify" / name).glob("*.json"))


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


def test_webhook_queue_survives_the_server_down_and_a_restart(tmp_path):
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


def test_webhook_4xx_drops_5xx_and_429_retry_in_order(tmp_path):
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


def test_webhook_queue_is_bounded_oldest_dropped(tmp_path):
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


def test_webhook_queue_corruption_and_partial_writes(tmp_path):
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
    assert notifiers._read_item(tmp_path, 1)["alert"]["rule"] == "HighCPUUsage"
    for cut in range(len(data)):
        (tmp_path / f"{1:020d}.json").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            notifiers._read_item(tmp_path, 1)


# -- alertmanager payload and resend (the real one: tests/e2e/test_alertmanager.py) -------


def test_alertmanager_payload():
    firing = alertmanager_alert(alert_json(make_alert()))
    assert firing == {
        "labels": {"alertname": "HighCPUUsage", "host": "web-01", "cpu": "all", "severity": "high"},
        "annotations": {
            "summary": "CPU at 94% on web-01 (HighCPUUsage)",
            "runbook": "https://runbooks.example/cpu",
        },
        "startsAt": "2023-11-14T22:13:20.000Z",
    }
    resolved = alertmanager_alert(alert_json(make_alert("resolved")))
    assert resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] == "2023-11-14T22:23:20.000Z"


def test_alertmanager_resends_firing_alerts_until_resolved(tmp_path):
    """Alertmanager forgets an alert resolve_timeout after the last post, so
    firing ones are re-posted; the set survives a restart."""
    received: list[list[dict[str, Any]]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    port = free_port()
    config = cfg(
        name="am", type="alertmanager", url=f"http://127.0.0.1:{port}", resend_interval="200ms"
    )

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/api/v2/alerts", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
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
