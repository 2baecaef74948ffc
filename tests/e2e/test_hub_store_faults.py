"""Issue 13, item 9: a damaged `hub.db` at start, and a store that cannot
write, with a real `vigil hub run` and a real `vigil run` agent.

A damaged file (truncated, garbage, a flipped page that still opens) is set
aside as `hub.db.<time>.corrupt` and the hub starts fresh, healthy, and the
agent delivers. A full disk turns /healthz to 503 and ingest to 503 with
Retry-After; once space is back both recover and the agent's records all
arrive, none lost, none twice."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hub.store.sqlite import SQLiteStore
from tests.conftest import small_tmpfs, wait_for
from tests.e2e.harness import Agent, agent_config
from tests.e2e.test_hub_ingest import HubProcess
from tests.hub.test_store import damage, wire

HOST = "edge-9"


def healthz(hub: HubProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(hub.url + "/healthz", timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def start_agent(tmp: Path, hub: HubProcess) -> Agent:
    (tmp / "agentside").mkdir()
    return Agent(
        tmp / "agentside",
        agent_config(
            tmp / "agentside",
            f'host_id = "{HOST}"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token(HOST)}"\n'
            'max_backoff = "1s"\n[buffer]\nflush_interval = "200ms"\n',
        ),
    )


def stream_at_hub(hub: HubProcess) -> dict | None:
    hosts = [h for h in hub.get("/v1/hosts")["hosts"] if h["id"] == HOST]
    return hosts[0]["streams"][0] if hosts and hosts[0]["streams"] else None


def records_at_hub(hub: HubProcess) -> int:
    """Every record of HOST the hub holds: each is one metric point or one event."""
    series = hub.get_all(f"/v1/metrics?host={HOST}", "series")
    return sum(len(s["points"]) for s in series) + len(
        hub.get_all(f"/v1/events?host={HOST}", "events")
    )


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped"])
def test_a_damaged_database_is_set_aside_and_the_hub_serves(tmp_path, how):
    data = tmp_path / "hub"
    data.mkdir()
    store = SQLiteStore(data / "hub.db")
    store.ingest(wire(1, 3000), 1767225600.0)
    store.close()
    damage(data / "hub.db", how)

    hub = HubProcess(tmp_path)  # starts: no traceback, no restart loop
    agent = None
    try:
        assert healthz(hub) == (200, {"status": "ok"})
        [aside] = data.glob("hub.db.*.corrupt")
        logged = [
            json.loads(line)
            for line in (tmp_path / "hub.log").read_text().splitlines()
            if "store_corrupt_set_aside" in line
        ]
        assert [(e["path"], e["moved_to"]) for e in logged] == [(str(data / "hub.db"), str(aside))]
        agent = start_agent(tmp_path, hub)
        stream = wait_for(
            lambda: (s := stream_at_hub(hub)) and s["last_seq"] > 100 and s,
            timeout=30,
            what="the agent's records at the fresh hub",
        )
        assert stream["lost"] == 0
        assert agent.stop() == 0
        final = stream_at_hub(hub)
        assert final is not None and records_at_hub(hub) == final["last_seq"]
    finally:
        if agent is not None and agent.proc.poll() is None:
            agent.stop()
        assert hub.stop() == 0
    assert "Traceback" not in (tmp_path / "hub.log").read_text()


def test_a_full_disk_makes_healthz_503_and_delivery_resumes_with_nothing_lost(tmp_path):
    with small_tmpfs(tmp_path / "hub", "6m") as data:
        hub = HubProcess(tmp_path)
        agent = start_agent(tmp_path, hub)
        try:
            wait_for(lambda: stream_at_hub(hub), timeout=30, what="first delivery")
            assert healthz(hub) == (200, {"status": "ok"})

            # fill the file system to the last byte
            with open(data / "filler", "wb") as filler:
                try:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
                except OSError:
                    pass
            _, body = wait_for(
                lambda: (h := healthz(hub))[0] == 503 and h,
                timeout=60,
                what="/healthz to report the full disk",
            )
            assert body["status"] == "store_unwritable" and body["error"]
            stuck = stream_at_hub(hub)
            assert stuck is not None
            log = (tmp_path / "hub.log").read_text()
            assert "store_write_failed" in log and "Traceback" not in log

            (data / "filler").unlink()  # space is back
            wait_for(lambda: healthz(hub) == (200, {"status": "ok"}), timeout=30, what="200")
            wait_for(
                lambda: (stream_at_hub(hub) or {}).get("last_seq", 0) > stuck["last_seq"] + 50,
                timeout=60,
                what="delivery to resume",
            )
            assert agent.stop() == 0  # its last records pushed
            final = stream_at_hub(hub)
            assert final is not None and final["lost"] == 0
            assert records_at_hub(hub) == final["last_seq"]  # nothing lost, nothing twice
        finally:
            if agent.proc.poll() is None:
                agent.stop()
            assert hub.stop() == 0
