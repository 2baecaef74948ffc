"""An agent with several hubs (`[hub] urls`): a real agent sends to the
first of two real hubs; that hub is killed with SIGKILL mid-stream, the
agent moves on to the second with the same batch, and returns to the first
`failback_after` once it is back. The buffer drains and nothing is
dead-lettered. (Each hub here has its own SQLite store, so a batch the
killed hub committed without answering may be stored by both; with a
shared store the high-water mark makes that replay harmless.)"""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, wait_exit, wait_http
from tests.e2e.test_hub_ingest import HubProcess

SECRET = "a secret shared by both test hubs"


def hub_at(tmp, name: str, port: int | None = None) -> HubProcess:
    where = tmp / name
    where.mkdir(exist_ok=True)
    return HubProcess(where, port=port, extra=f'secret_file = "{tmp / "secret"}"\n')


def last_seq(hub: HubProcess) -> int:
    hosts = {h["id"]: h for h in hub.get("/v1/hosts")["hosts"]}
    streams = hosts.get("edge-1", {}).get("streams", [])
    return max((s["last_seq"] for s in streams), default=0)


def test_the_agent_fails_over_to_the_next_hub_and_back(tmp_path):
    (tmp_path / "secret").write_text(SECRET + "\n")
    first, second = hub_at(tmp_path, "first"), hub_at(tmp_path, "second")
    api = free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "edge-1"\n[hub]\nurls = ["{first.url}", "{second.url}"]\n'
        f'token = "{first.token("edge-1")}"\nfailback_after = "3s"\nmax_backoff = "500ms"\n'
        'timeout = "2s"\n[buffer]\nflush_interval = "200ms"\n',
        port=api,
    )
    agent = Agent(tmp_path, config)

    def status() -> dict[str, Any]:
        return dict(json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"])

    try:
        assert agent.notify is not None
        agent.notify.wait("READY=1")
        assert status()["hubs"] == [first.url, second.url]
        wait_for(lambda: last_seq(first) > 0, 20, "the first hub to get batches")
        assert last_seq(second) == 0  # the first is preferred

        first.proc.send_signal(signal.SIGKILL)  # mid-stream: batches every 200 ms
        wait_exit(first.proc)
        first.log.close()
        killed_at = last_seq(second)
        wait_for(lambda: last_seq(second) > killed_at + 20, 30, "the second hub to take over")
        shipper = status()
        assert shipper["hub"] == second.url and shipper["failovers"] >= 1
        assert agent.events("hub_failover")[0]["to_hub"] == second.url

        # the first comes back on its port: the agent returns after failback_after
        first = hub_at(tmp_path, "first", port=first.port)
        back_from = last_seq(first)
        wait_for(lambda: last_seq(first) > back_from + 5, 30, "the agent to return to the first")
        assert status()["hub"] == first.url and agent.events("hub_failback")
        shipper = wait_for(
            lambda: (st := status())["last_error"] is None and st["lag_seconds"] < 5 and st,
            20,
            "the backlog delivered",
        )
        assert shipper["dead_letter_batches"] == 0
    finally:
        assert agent.stop() == 0
        for hub in (first, second):
            if hub.proc.poll() is None:
                hub.stop()
