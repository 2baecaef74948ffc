import os
import socket
import stat

import pytest

from agent.core import statedir
from agent.core.exposition import escape_label, format_value, render
from agent.core.records import Metric
from agent.core.sdnotify import SystemdNotifier
from collectors.base import counter, gauge


def test_notify_to_abstract_socket():
    name = f"vigil-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    try:
        n = SystemdNotifier("@" + name)
        assert n.send("READY=1", "STATUS=ok")
        assert server.recv(100) == b"READY=1\nSTATUS=ok"
        n.close()
    finally:
        server.close()


def test_notify_env_is_consumed_and_watchdog_is_half(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = SystemdNotifier.from_env()
    assert n.watchdog_interval == 15.0
    assert "NOTIFY_SOCKET" not in os.environ  # children never speak for the agent
    assert not n.send("READY=1")  # no listener: reported, never raised
    n.close()
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert SystemdNotifier.from_env().watchdog_interval is None


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not SystemdNotifier.from_env().send("READY=1")


def test_state_dir_created_private_and_tightened(tmp_path):
    fresh = tmp_path / "a" / "b"
    statedir.prepare(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) & 0o027 == 0
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    statedir.prepare(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755


def test_lock_names_the_holder(tmp_path):
    first = statedir.StateLock(tmp_path)
    first.acquire()
    with pytest.raises(statedir.StateDirError, match=f"pid {os.getpid()}"):
        statedir.StateLock(tmp_path).acquire()
    first.release()
    statedir.StateLock(tmp_path).acquire()


def test_exposition_format():
    specs = {
        s.name: s for s in (gauge("temp_celsius", "line1\nback\\slash"), counter("x_total", "X"))
    }
    text = render(
        [
            Metric("x_total", 3, 0.0, {"a": 'q"uote', "b": "new\nline"}, "counter"),
            Metric("temp_celsius", 21.5, 0.0),
            Metric("x_total", 2**60, 0.0, {"a": "big"}, "counter"),
        ],
        specs,
    )
    assert text == (
        "# HELP temp_celsius line1\\nback\\\\slash\n"
        "# TYPE temp_celsius gauge\n"
        "temp_celsius 21.5\n"
        "# HELP x_total X\n"
        "# TYPE x_total counter\n"
        'x_total{a="q\\"uote",b="new\\nline"} 3\n'
        'x_total{a="big"} 1152921504606846976\n'
    )
    assert escape_label("a\\b") == "a\\\\b"
    assert [format_value(v) for v in (float("nan"), float("inf"), -float("inf"), 1e300, 0.1)] == [
        "NaN",
        "+Inf",
        "-Inf",
        "1e+300",
        "0.1",
    ]
