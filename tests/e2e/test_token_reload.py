"""The agent reads `token_file` again on SIGHUP, though nothing else in
its config changed: an agent refused for a wrong token delivers all it
kept once the file is fixed, without a restart."""

from __future__ import annotations

import json
import signal
import time

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, wait_http
from tests.e2e.test_hub_ingest import HubProcess


def test_a_fixed_token_file_is_read_on_sighup_and_nothing_is_lost(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    token_file = tmp_path / "token"
    token_file.write_text("edge-7." + "0" * 64 + "\n")  # well formed, not signed by this hub
    api = free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "edge-7"\n[hub]\nurl = "http://127.0.0.1:{hub.port}"\n'
        f'token_file = "{token_file}"\nmax_backoff = "20s"\n'
        '[buffer]\nflush_interval = "200ms"\n',
        port=api,
    )
    agent = Agent(tmp_path, config)
    try:
        agent.notify.wait("READY=1")
        status = lambda: json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]  # noqa: E731
        wait_for(
            lambda: status()["auth_failures"] >= 2 and status()["buffer_records"] > 20,
            timeout=30,
            what="401s, and a backlog kept",
        )
        assert hub.get("/v1/hosts")["hosts"] == []
        fixed = time.time()

        token_file.write_text(hub.token("edge-7") + "\n")
        agent.signal(signal.SIGHUP)
        agent.notify.wait("READY=1", count=2)
        wait_for(
            lambda: status()["last_error"] is None and status()["buffer_records"] < 20,
            timeout=30,
            what="the backlog delivered with the new token",
        )
        assert [e["event"] for e in agent.events("hub_token_changed")] == ["hub_token_changed"]
        assert not agent.events("shipper_started")[1:]  # the same shipper carried on
        [host] = hub.get("/v1/hosts")["hosts"]
        assert host["streams"][0]["lost"] == 0  # from the stream's first record
        series = hub.get("/v1/metrics?host=edge-7&name=memory_total_bytes")["series"]
        stamps = [ts for ts, _ in series[0]["points"]]
        assert any(ts < fixed for ts in stamps)  # collected while refused, delivered after
        assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))
        hub_log = (tmp_path / "hubside" / "hub.log").read_text()
        rejected = [json.loads(x) for x in hub_log.splitlines() if "ingest_rejected" in x]
        assert rejected and rejected[0]["reason"] == "unauthorized"
        assert rejected[0]["host"] == "edge-7"  # the host the refused token claims
    finally:
        assert agent.stop() == 0
        hub.stop()
