"""Agent and hub as real processes on loopback: records arrive once, in
order, with their original timestamps, including what was collected while
the hub was down."""

from __future__ import annotations

import json
import time

from tests.conftest import small_tmpfs, wait_for
from tests.e2e.harness import Agent, agent_config, free_port, wait_http
from tests.e2e.test_hub_ingest import HubProcess


def hub_agent_config(tmp_path, hub_port, token, api_port):
    return agent_config(
        tmp_path,
        f'host_id = "edge-7"\n[hub]\nurl = "http://127.0.0.1:{hub_port}"\ntoken = "{token}"\n'
        'max_backoff = "1s"\n[buffer]\nflush_interval = "200ms"\n',
        port=api_port,
    )


def stream_of(hub):
    hosts = hub.get("/v1/hosts")["hosts"]
    return hosts[0]["streams"][0] if hosts else None


def stamps_at_hub(hub, host="edge-7"):
    """Timestamps of one gauge the agent sends every interval: one point per
    collection, so a record stored twice shows as a repeated timestamp."""
    series = hub.get(f"/v1/metrics?host={host}&name=memory_total_bytes")["series"]
    return [ts for ts, _ in series[0]["points"]]


def test_records_reach_the_hub_and_a_hub_outage_loses_nothing(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    token = hub.token("edge-7")
    api = free_port()
    agent = Agent(tmp_path, hub_agent_config(tmp_path, hub.port, token, api))
    try:
        agent.notify.wait("READY=1")
        first = wait_for(lambda: stream_of(hub), what="the agent's stream at the hub")
        assert first["lost"] == 0

        # the hub goes away for a while; the agent keeps collecting into its buffer
        assert hub.stop() == 0
        down = time.time()
        status = lambda: json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]  # noqa: E731
        wait_for(
            lambda: status()["retries"] >= 2 and status()["buffer_records"] > 50,
            timeout=30,
            what="a backlog while the hub is down",
        )
        backlog_from = status()["acked_seq"]

        up = time.time()
        hub = HubProcess(tmp_path / "hubside", hub.port)  # same address, data and secret
        wait_for(
            lambda: status()["buffer_records"] < 30 and status()["last_error"] is None,
            timeout=30,
            what="the backlog delivered",
        )
        stream = stream_of(hub)
        assert stream["lost"] == 0 and stream["last_seq"] > backlog_from
        # every record once: one point per (series, timestamp) for a gauge sampled every 200ms
        stamps = stamps_at_hub(hub)
        assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))
        # what was collected during the outage arrived later, with its own timestamps
        assert any(down < ts < up for ts in stamps)
    finally:
        assert agent.stop() == 0
        if hub.proc.poll() is None:
            hub.stop()


def test_kill_9_loop_neither_loses_nor_duplicates(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    config = hub_agent_config(tmp_path, hub.port, hub.token("edge-7"), None)
    try:
        for _ in range(4):
            agent = Agent(tmp_path, config)
            agent.notify.wait("READY=1")
            seen = (stream_of(hub) or {}).get("last_seq", 0)
            wait_for(
                lambda s=seen: (stream_of(hub) or {}).get("last_seq", 0) > s + 20,
                what="more records at the hub",
            )
            agent.proc.kill()  # SIGKILL: no flush, no goodbye
            agent.proc.wait()
            agent.stop()
        agent = Agent(tmp_path, config)  # a last clean run delivers the rest
        agent.notify.wait("READY=1")
        assert agent.stop() == 0
        wait_for(lambda: stream_of(hub)["last_seq"] > 0, what="stream")
        stream = stream_of(hub)
        # kill -9 loses only what was still in memory (< flush_interval); no gaps on disk
        assert stream["lost"] == 0
        stamps = stamps_at_hub(hub)
        assert len(stamps) == len(set(stamps)), "a record was stored twice"
        assert stamps == sorted(stamps)
    finally:
        hub.stop()


def test_full_disk_no_crash_counted_drops_and_delivery_resumes(tmp_path):
    with small_tmpfs(tmp_path / "small", "256k") as small:
        run_full_disk_scenario(tmp_path, small)


def run_full_disk_scenario(tmp_path, small):
    (tmp_path / "hubside").mkdir()
    hub_port, api = free_port(), free_port()
    token_hub = HubProcess(tmp_path / "hubside", hub_port)  # only to make the token
    token = token_hub.token("edge-7")
    token_hub.stop()
    config = agent_config(
        small,
        f'host_id = "edge-7"\n[hub]\nurl = "http://127.0.0.1:{hub_port}"\n'
        f'token = "{token}"\nmax_backoff = "500ms"\n'
        '[buffer]\nflush_interval = "100ms"\nbatch_records = 100\n',
        interval="50ms",
        port=api,
    )
    agent = Agent(tmp_path, config)
    hub = None
    try:
        agent.notify.wait("READY=1")

        def shipper():
            return json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]

        # the hub is away and the disk fills: writes are refused, then drops are counted
        wait_for(
            lambda: shipper()["write_error"] and shipper()["dropped_records"] > 0,
            timeout=60,
            what="a full disk",
        )
        assert "No space left" in shipper()["write_error"]
        assert agent.proc.poll() is None  # no crash
        failed = agent.events("buffer_write_failed")
        assert len(failed) == 1  # logged once, not once per flush

        hub = HubProcess(tmp_path / "hubside", hub_port)
        wait_for(
            lambda: shipper()["write_error"] is None and shipper()["sent_records"] > 0,
            timeout=60,
            what="delivery to resume and the disk to accept writes",
        )
        wait_for(
            lambda: (stream_of(hub) or {}).get("last_seq", 0) >= shipper()["acked_seq"] > 0,
            what="the hub to hold what the agent counts as acknowledged",
        )
        assert stream_of(hub)["lost"] == 0  # memory drops never took sequence numbers
    finally:
        code = agent.stop()
        if hub is not None:
            hub.stop()
    assert code == 0


def test_batches_the_hub_refuses_for_good_are_dead_lettered_and_the_queue_moves_on(tmp_path):
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside", max_body="1024")  # every real batch is too large
    api = free_port()
    agent = Agent(tmp_path, hub_agent_config(tmp_path, hub.port, hub.token("edge-7"), api))
    try:
        agent.notify.wait("READY=1")

        def shipper():
            return json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]

        wait_for(lambda: shipper()["dead_letter_batches"] >= 3, what="dead letters")
        letters = sorted((tmp_path / "state" / "deadletter").glob("*.msgpack"))
        assert len(letters) >= 3
        reason = letters[0].with_suffix(".reason").read_text()
        assert reason.startswith("413 ")
        assert shipper()["acked_seq"] > 0  # the queue moved on past them
        assert agent.events("batch_dead_lettered")[0]["status"] == 413
        metrics = wait_http(f"http://127.0.0.1:{api}/metrics")
        assert "vigil_shipper_dead_letter_batches_total" in metrics
    finally:
        assert agent.stop() == 0
        hub.stop()


def test_a_wrong_token_keeps_the_data_and_is_reported(tmp_path):
    """A token this hub did not sign (another hub's, or one from before its
    secret changed). A token for another host is refused before the start
    (tests/e2e/test_check_config.py): the agent can read that in it."""
    from hub.auth import host_token

    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    wrong = host_token("edge-7", b"another hub's secret, not this one")
    agent = Agent(tmp_path, hub_agent_config(tmp_path, hub.port, wrong, api))
    try:
        agent.notify.wait("READY=1")

        def shipper():
            return json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]

        wait_for(lambda: shipper()["auth_failures"] >= 2, what="auth failures")
        assert shipper()["sent_records"] == 0 and shipper()["buffer_records"] > 0
        assert shipper()["last_error"].startswith("hub refused our token (401)")
        assert agent.events("hub_auth_failed")[0]["status"] == 401
        assert hub.get("/v1/hosts") == {"hosts": []}  # nothing written as another host
    finally:
        assert agent.stop() == 0
        hub.stop()


def test_hub_killed_mid_stream_stores_nothing_twice(tmp_path):
    """kill -9 of the hub while the agent pushes every 50 ms: some kills land
    after a commit and before the reply, so the agent sends that batch again
    to the restarted hub, which must trim it."""
    import random

    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    port, api = hub.port, free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "edge-7"\n[hub]\nurl = "http://127.0.0.1:{port}"\n'
        f'token = "{hub.token("edge-7")}"\nmax_backoff = "200ms"\n'
        '[buffer]\nflush_interval = "50ms"\n',
        interval="50ms",
        port=api,
    )
    agent = Agent(tmp_path, config)
    rng = random.Random(7)
    try:
        agent.notify.wait("READY=1")
        for _ in range(6):
            seen = (stream_of(hub) or {}).get("last_seq", 0)
            wait_for(
                lambda s=seen, h=hub: (stream_of(h) or {}).get("last_seq", 0) > s,
                what="the hub storing more",
            )
            time.sleep(rng.uniform(0, 0.1))  # a random point in the push cycle, not a wait
            hub.proc.kill()
            hub.proc.wait()
            hub.log.close()
            hub = HubProcess(tmp_path / "hubside", port)

        def caught_up():
            status = json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]
            return status["last_error"] is None and status["buffer_records"] < 50

        wait_for(caught_up, timeout=30, what="the agent caught up")
        stream = stream_of(hub)
        assert stream["lost"] == 0
        stamps = stamps_at_hub(hub)
        assert len(stamps) == len(set(stamps)), "a record was stored twice"
    finally:
        assert agent.stop() == 0
        hub.stop()
