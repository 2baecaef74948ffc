"""Log tailing end to end: a writer appends numbered lines, the real
`logrotate` rotates the file many times over, a real agent tails it and
pushes to a real hub. At the hub, every numbered line must be there
exactly once (for copytruncate: any line missing must have been written
while logrotate was between its copy and its truncation, the documented
window)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, vigil, wait_http
from tests.e2e.test_hub_ingest import HubProcess

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
needs_logrotate = pytest.mark.skipif(
    not os.path.exists(LOGROTATE), reason="logrotate not installed (make test installs it)"
)
NUMBERED_RULE = """
  [[logs.rules]]
  name = "numbered"
  pattern = 'seq=(?P<seq>\\d+) '
  severity = "info"
"""


class Writer(threading.Thread):
    """Appends `seq=N` lines through one O_APPEND descriptor. `reopen` is
    what logrotate's postrotate signal does to a daemon: after `create`, it
    reopens the path, having written to the renamed file until then."""

    def __init__(self, path: Path, pause: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.path, self.pause = path, pause
        self.written: dict[int, tuple[float, float]] = {}  # seq -> (before, after) write
        self.stop = threading.Event()
        self.reopen = threading.Event()
        self.count = 0

    def run(self) -> None:
        fh = open(self.path, "a")  # noqa: SIM115 - reopened below
        try:
            while not self.stop.is_set():
                self.count += 1
                if self.reopen.is_set():
                    self.reopen.clear()
                    fh.close()
                    fh = open(self.path, "a")  # noqa: SIM115
                before = time.monotonic()
                fh.write(f"2026-11-26T10:00:00Z app[42]: seq={self.count} payload {'x' * 60}\n")
                fh.flush()
                self.written[self.count] = (before, time.monotonic())
                time.sleep(self.pause)
        finally:
            fh.close()


def logs_config(tmp: Path, hub: HubProcess, paths: list[str], api: int, extra: str = "") -> str:
    return agent_config(
        tmp,
        f'host_id = "logs-1"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token("logs-1")}"\n'
        'max_backoff = "1s"\n[buffer]\nflush_interval = "100ms"\n'
        f"[[logs]]\npaths = {json.dumps(paths)}\n"
        'start_at = "beginning"\ndefault_rules = false\ndetectors = []\n'
        'events_per_minute = 10000000\nrotate_wait = "2s"\npoll_interval = "200ms"\n'
        f"context_lines = 0\n{extra}{NUMBERED_RULE}",
        interval="1s",
        port=api,
    )


def seqs_at_hub(hub: HubProcess) -> list[int]:
    events = hub.get_all("/v1/events?host=logs-1&kind=log", "events")
    return [int(e["fields"]["fields"]["seq"]) for e in events if e["fields"].get("rule")]


def agent_metric(api: int, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in wait_http(f"http://127.0.0.1:{api}/metrics").splitlines():
        if line.startswith((f"{name}{{", f"{name} ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}}")


def settled(hub: HubProcess, total: int, quiet: float = 3.0, timeout: float = 45.0) -> list[int]:
    """What the hub holds once every line arrived, or nothing new came for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = seqs_at_hub(hub)
        if len(set(got)) >= total:
            return got
        if len(got) != last:
            last, since = len(got), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return got
        time.sleep(0.2)
    return seqs_at_hub(hub)


def rotate_many(
    conf: Path, state: Path, writer: Writer, times: int, gap: float
) -> list[tuple[float, float]]:
    windows = []
    for _ in range(times):
        time.sleep(gap)
        start = time.monotonic()
        subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], check=True, timeout=30)
        windows.append((start, time.monotonic()))
        writer.reopen.set()  # postrotate: "kill -HUP the daemon"
    return windows


@needs_logrotate
@pytest.mark.parametrize(
    ("directives", "glob"),
    [
        ("create", "app.log"),
        ("create\n    compress\n    delaycompress", "app.log*"),
        ("create\n    compress", "app.log"),
        ("copytruncate", "app.log*"),
        ("copytruncate\n    compress\n    delaycompress", "app.log"),
    ],
    ids=["create", "create-delaycompress", "create-compress", "copytruncate", "copytruncate-dc"],
)
def test_rotation_torture_with_real_logrotate(tmp_path, directives, glob):
    logdir = tmp_path / "log"
    logdir.mkdir()
    log = logdir / "app.log"
    log.touch()
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 100\n    missingok\n    {directives}\n}}\n")
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    agent = Agent(tmp_path, logs_config(tmp_path, hub, [str(logdir / glob)], api))
    writer = Writer(log)
    try:
        agent.notify.wait("READY=1")
        writer.start()
        windows = rotate_many(conf, tmp_path / "logrotate.state", writer, times=8, gap=0.3)
        writer.stop.set()
        writer.join()
        total = writer.count

        got = settled(hub, total)
        assert len(got) == len(set(got)), "a line arrived twice"
        missing = sorted(set(range(1, total + 1)) - set(got))
        for seq in missing:
            before, after = writer.written[seq]
            assert any(start <= after and before <= end for start, end in windows), (
                f"line {seq} lost outside any logrotate run"
            )
        missed = agent_metric(api, "log_bytes_missed_total", file=str(log))
        if directives.startswith("create"):
            assert missing == [] and missed == 0
    finally:
        writer.stop.set()
        assert agent.stop() == 0
        hub.stop()


def test_kill_9_while_tailing_under_load_loses_and_repeats_nothing(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir()
    log = logdir / "app.log"
    log.touch()
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    config = logs_config(tmp_path, hub, [str(log)], api)
    writer = Writer(log, pause=0.0002)
    writer.start()
    try:
        for _ in range(5):
            agent = Agent(tmp_path, config)
            agent.notify.wait("READY=1")
            seen = len(seqs_at_hub(hub))
            wait_for(lambda s=seen: len(seqs_at_hub(hub)) > s + 200, what="more lines at the hub")
            agent.proc.kill()
            agent.proc.wait()
            agent.stop()
        writer.stop.set()
        writer.join()
        agent = Agent(tmp_path, config)
        agent.notify.wait("READY=1")
        total = writer.count
        wait_for(lambda: len(set(seqs_at_hub(hub))) >= total, timeout=30, what="every line")
        got = seqs_at_hub(hub)
        assert len(got) == len(set(got)) == total, "a line arrived twice"
        assert sorted(got) == list(range(1, total + 1))
        # the rule's counter agrees with the events, across five kill -9s
        wait_for(
            lambda: agent_metric(api, "log_matches_total", rule="numbered", file=str(log)) == total,
            what="log_matches_total to count every line once",
        )
        assert agent.stop() == 0
    finally:
        writer.stop.set()
        hub.stop()


def test_rotation_while_stopped_and_a_partial_line_across_a_restart(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir()
    log = logdir / "app.log"
    log.write_text("2026 seq=1 a\n2026 seq=2 b\n2026 seq=3 ")  # the last line is not finished
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    config = logs_config(tmp_path, hub, [str(log)], api)
    agent = Agent(tmp_path, config)
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: sorted(seqs_at_hub(hub)) == [1, 2], what="the two complete lines")
        shown = vigil("status", "--config", str(agent.config_path), timeout=30).stdout
        assert "logs: 1 files" in shown and f"{log} " in shown  # with its committed offset
        assert agent.stop() == 0
        with open(log, "a") as fh:
            fh.write("c\n2026 seq=4 d\n")  # finishes line 3 while the agent is down
        os.rename(log, logdir / "app.log.1")
        log.write_text("2026 seq=5 e\n")
        agent = Agent(tmp_path, config)
        agent.notify.wait("READY=1")
        wait_for(lambda: len(seqs_at_hub(hub)) >= 5, what="lines 3 to 5")
        assert sorted(seqs_at_hub(hub)) == [1, 2, 3, 4, 5]
        line3 = [
            e
            for e in hub.get("/v1/events?host=logs-1&kind=log")["events"]
            if e["fields"]["fields"].get("seq") == "3"
        ]
        assert line3[0]["fields"]["line"] == "2026 seq=3 c"  # whole, not cut at the restart
    finally:
        agent.stop()
        hub.stop()
