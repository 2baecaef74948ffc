"""`vigil run` as systemd runs it: a real process, a real NOTIFY_SOCKET,
real signals, a real HTTP endpoint on loopback."""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, free_port, vigil, wait_exit, wait_http
from tests.e2e.harness import agent_config as config


def status(port):
    return json.loads(wait_http(f"http://127.0.0.1:{port}/status"))


def test_ready_watchdog_status_and_clean_stop(tmp_path):
    agent = Agent(tmp_path, config(tmp_path), env={"WATCHDOG_USEC": "400000"})
    try:
        agent.notify.wait("READY=1")
        ready = next(m for m in agent.notify.messages if "READY=1" in m)
        assert "STATUS=8 collectors running" in ready
        agent.notify.wait("WATCHDOG=1", count=3)  # every 200ms, half of 400ms
    finally:
        code = agent.stop()
    assert code == 0
    assert any("STOPPING=1" in m for m in agent.notify.messages)
    assert agent.events("agent_stopped")
    mode = stat.S_IMODE((tmp_path / "state").stat().st_mode)
    assert mode & 0o027 == 0, oct(mode)  # not group-writable, nothing for others


def test_no_watchdog_pings_without_watchdog_usec(tmp_path):
    agent = Agent(tmp_path, config(tmp_path))
    try:
        agent.notify.wait("READY=1")
        # long enough for pings at any plausible default to have shown up
        wait_for(lambda: agent.events("agent_ready"), what="agent_ready")
    finally:
        assert agent.stop() == 0
    assert not any("WATCHDOG=1" in m for m in agent.notify.messages)


def test_sigint_also_stops_cleanly(tmp_path):
    agent = Agent(tmp_path, config(tmp_path))
    agent.notify.wait("READY=1")
    agent.signal(signal.SIGINT)
    assert wait_exit(agent.proc) == 0
    agent.stop()


def test_sighup_reloads_a_good_config_and_keeps_the_old_on_a_bad_one(tmp_path):
    port = free_port()
    agent = Agent(tmp_path, config(tmp_path, port=port))
    try:
        agent.notify.wait("READY=1")
        assert len(status(port)["collectors"]) == 8

        # good: only two host collectors, a new interval
        agent.config_path.write_text(
            config(tmp_path, '[host]\nenabled = ["cpu", "memory"]\n', interval="300ms", port=port)
        )
        agent.signal(signal.SIGHUP)
        agent.notify.wait("READY=1", count=2)
        wait_for(
            lambda: [c["name"] for c in status(port)["collectors"]] == ["cpu", "memory", "self"],
            what="reloaded collectors",
        )
        assert status(port)["collectors"][0]["interval_seconds"] == 0.3

        # bad: the agent logs why and keeps running the previous config
        agent.config_path.write_text(config(tmp_path, '[host]\nenabled = ["gpu"]\n', port=port))
        agent.signal(signal.SIGHUP)
        failed = wait_for(
            lambda: agent.events("reload_failed_keeping_old_config"), what="reload failure"
        )
        assert "host.enabled" in failed[0]["errors"][0]
        assert str(agent.config_path) in failed[0]["errors"][0]
        assert [c["name"] for c in status(port)["collectors"]] == ["cpu", "memory", "self"]
        runs = status(port)["collectors"][0]["runs"]
        wait_for(lambda: status(port)["collectors"][0]["runs"] > runs + 2, what="still collecting")
        assert any("reload failed" in m for m in agent.notify.drain())
    finally:
        assert agent.stop() == 0


def test_second_agent_on_the_same_state_dir_refuses_to_start(tmp_path):
    first = Agent(tmp_path, config(tmp_path))
    try:
        first.notify.wait("READY=1")
        second = vigil("run", "--config", str(first.config_path), timeout=30)
        assert second.returncode == 1
        assert f"another vigil agent (pid {first.proc.pid})" in second.stderr
        assert str(tmp_path / "state") in second.stderr
        assert first.proc.poll() is None
    finally:
        assert first.stop() == 0


def test_lock_is_released_by_kill_9(tmp_path):
    first = Agent(tmp_path, config(tmp_path))
    first.notify.wait("READY=1")
    first.proc.kill()
    first.proc.wait()
    first.stop()
    again = Agent(tmp_path, config(tmp_path))
    try:
        again.notify.wait("READY=1")
    finally:
        assert again.stop() == 0


def fake_procfs(tmp_path):
    """A procfs where one file is garbage (its collector raises every run)
    and one is a FIFO nobody writes (its collector hangs opening it)."""
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "sys" / "fs").mkdir(parents=True)
    (root / "self").mkdir()
    for name in ("stat", "meminfo", "vmstat", "loadavg", "net/dev", "sys/fs/file-nr", "1"):
        (root / name).symlink_to(f"/proc/{name}")
    (root / "diskstats").write_text("this is not\na diskstats file\n")
    os.mkfifo(root / "self" / "mounts")  # the disk collector reads the mount table here
    return root


def test_crashing_and_hanging_collectors_do_not_stop_the_others(tmp_path):
    port = free_port()
    procfs = fake_procfs(tmp_path)
    cfg = config(tmp_path, f'collect_timeout = "300ms"\n[host]\nprocfs = "{procfs}"\n', port=port)
    agent = Agent(tmp_path, cfg)
    try:
        agent.notify.wait("READY=1")

        def by_name():
            return {c["name"]: c for c in status(port)["collectors"]}

        wait_for(
            lambda: by_name()["diskio"]["errors"] >= 2 and by_name()["memory"]["runs"] >= 10,
            timeout=30,
            what="errors and progress",
        )
        c = by_name()
        assert c["diskio"]["failing"] and c["diskio"]["last_error"].startswith("ValueError")
        assert c["disk"]["timeouts"] == 1 and c["disk"]["overruns"] >= 1
        assert c["disk"]["last_error"] == "timed out after 0.3s"
        for healthy in ("cpu", "memory", "system", "load", "network", "self"):
            assert c[healthy]["errors"] == 0 and c[healthy]["timeouts"] == 0, c[healthy]
        assert agent.events("collector_error")[0]["collector"] == "diskio"
        assert agent.events("collector_timeout")[0]["collector"] == "disk"
        metrics = wait_http(f"http://127.0.0.1:{port}/metrics")
        assert 'vigil_collector_errors_total{collector="diskio"}' in metrics
        assert 'vigil_collector_timeouts_total{collector="disk"} 1' in metrics
        assert "memory_available_bytes" in metrics
    finally:
        code = agent.stop()  # a thread is still blocked on the FIFO: stop anyway
    assert code == 0


@pytest.mark.parametrize("bad", ['[agent]\ninterval = "soon"\n', "[nope]\n"])
def test_run_with_a_bad_config_exits_2_naming_file_and_key(tmp_path, bad):
    path = tmp_path / "agent.toml"
    path.write_text(bad)
    result = vigil("run", "--config", str(path), timeout=30)
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert ("agent.interval" in result.stderr) or ("nope" in result.stderr)


def test_state_dir_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{blocker / "state"}"\n')
    result = vigil("run", "--config", str(path), timeout=30)
    assert result.returncode == 2  # the configuration's fault: systemd does not retry it
    assert f"cannot create state directory {blocker / 'state'}" in result.stderr
