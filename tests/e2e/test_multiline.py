"""Issue 18: multi-line events through the real agent. A stack trace is one
event with all its lines; one at the end of the file goes out once
`multiline_timeout` has passed; and traces written while the agent is
killed -9 arrive at the hub exactly once each, whole."""

from __future__ import annotations

import signal
import threading
import time

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config
from tests.e2e.test_hub_ingest import HubProcess


def trace(i: int) -> str:
    return (
        f"2026-11-29 10:00:00 ERROR request {i} failed\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 12, in handle\n'
        "    return work()\n"
        f"ValueError: bad input {i}\n"
    )


def config(tmp_path, hub: HubProcess, log) -> str:
    return agent_config(
        tmp_path,
        f'host_id = "ml-1"\n[hub]\nurl = "http://127.0.0.1:{hub.port}"\n'
        f'token = "{hub.token("ml-1")}"\n[buffer]\nflush_interval = "100ms"\n'
        f'[[logs]]\npaths = ["{log}"]\nstart_at = "beginning"\n'
        'multiline = { preset = "python_traceback" }\nmultiline_timeout = "1s"\n'
        "default_rules = false\ndetectors = []\nevents_per_minute = 1000000\n"
        '[[logs.rules]]\nname = "failed"\npattern = "ERROR request"\n',
    )


def events(hub: HubProcess) -> list[dict]:
    return hub.get_all("/v1/events?host=ml-1&kind=log&limit=1000", "events")


def test_a_trace_is_one_event_and_the_last_one_waits_for_its_timeout(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    log = tmp_path / "app.log"
    log.write_text("")
    agent = Agent(tmp_path, config(tmp_path, hub, log))
    try:
        agent.notify.wait("READY=1")
        first = trace(1)
        with open(log, "a") as out:  # in two writes, the second after a read of the first
            out.write(first[:90])
            out.flush()
            time.sleep(0.5)
            out.write(first[90:] + trace(2))
        got = wait_for(lambda: len(events(hub)) >= 2 and events(hub), 30, "both traces")
        by_text = sorted(e["message"] for e in got)
        assert by_text == [trace(1).rstrip("\n"), trace(2).rstrip("\n")]
    finally:
        assert agent.stop() == 0
        hub.stop()


def test_traces_written_across_a_kill_arrive_once_each_and_whole(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    log = tmp_path / "app.log"
    log.write_text("")
    n = 3000

    def write() -> None:
        with open(log, "a") as out:
            for i in range(n):
                text = trace(i)
                out.write(text[:70])  # a trace split across writes, as a logger flushes
                out.flush()
                out.write(text[70:])
                if i % 50 == 49:
                    out.flush()
                    time.sleep(0.05)

    agent = Agent(tmp_path, config(tmp_path, hub, log))
    writer = threading.Thread(target=write)
    try:
        agent.notify.wait("READY=1")
        writer.start()
        wait_for(lambda: events(hub), 30, "the first traces at the hub")
        assert writer.is_alive()
        agent.proc.send_signal(signal.SIGKILL)
        agent.stop()
        agent = Agent(tmp_path, config(tmp_path, hub, log))
        agent.notify.wait("READY=1")
        writer.join(120)
        got = wait_for(lambda: len(events(hub)) >= n and events(hub), 90, f"{n} traces")
        messages = sorted(e["message"] for e in got)
        assert len(messages) == n, "a trace arrived twice"
        assert messages == sorted(trace(i).rstrip("\n") for i in range(n))
    finally:
        writer.join(120)
        assert agent.stop() == 0
        hub.stop()
