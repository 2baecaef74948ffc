"""The fleet hub (issue 14, items 1 and 2) with real processes: two real
agents push to a real hub; one is killed, goes late then silent, and
HostSilent fires through a hub notifier (a file), then resolves with the
gap when it comes back; /v1/hosts, /metrics and `vigil hub hosts` show it;
an agent's own alert shows in /v1/alerts; retire and revoke work."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, vigil
from tests.e2e.test_hub_ingest import HubProcess


def get(hub: HubProcess, path: str) -> Any:
    with urllib.request.urlopen(hub.url + path, timeout=10) as resp:
        body = resp.read().decode()
    return body if path == "/metrics" else json.loads(body)


def statuses(hub: HubProcess) -> dict[str, str]:
    return {h["id"]: h["status"] for h in get(hub, "/v1/hosts")["hosts"]}


def start_agent(tmp: Path, hub: HubProcess, host: str, extra: str = "") -> Agent:
    tmp.mkdir()
    (tmp / "token").write_text(hub.token(host) + "\n")
    config = agent_config(
        tmp, f'[hub]\nurl = "{hub.url}"\ntoken_file = "{tmp / "token"}"\n{extra}', interval="1s"
    )
    return Agent(tmp, config.replace("[agent]\n", f'[agent]\nhost_id = "{host}"\n'))


@pytest.fixture
def fleet(tmp_path):
    (tmp_path / "hub").mkdir()
    alerts_file = tmp_path / "hub-alerts.jsonl"
    hub = HubProcess(
        tmp_path / "hub",
        extra=f'silent_after = "4s"\n[[hub.notifiers]]\nname = "ops"\ntype = "file"\n'
        f'path = "{alerts_file}"\n',
    )
    # web-01 fires an alert of its own at once: memory is never 0 bytes
    rule = (
        '[[alerts]]\nname = "MemoryPresent"\nexpr = "memory_total_bytes > 0"\n'
        'for = "0s"\nseverity = "low"\n'
    )
    agents = {
        "web-01": start_agent(tmp_path / "web-01", hub, "web-01", rule),
        "db-01": start_agent(tmp_path / "db-01", hub, "db-01"),
    }
    yield hub, agents, alerts_file
    for agent in agents.values():
        if agent.proc.poll() is None:
            agent.stop()
    hub.stop()


def notifications(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_silent_host_raises_host_silent_and_comes_back(fleet):
    hub, agents, alerts_file = fleet
    wait_for(lambda: statuses(hub) == {"web-01": "up", "db-01": "up"}, 30, "both hosts up")
    hosts = {h["id"]: h for h in get(hub, "/v1/hosts")["hosts"]}
    assert hosts["db-01"]["interval"] == 1.0  # announced in its batches

    # an agent's own alert reaches the fleet view
    wait_for(
        lambda: [a for a in get(hub, "/v1/alerts")["alerts"] if a["name"] == "MemoryPresent"],
        30,
        "web-01's alert in /v1/alerts",
    )

    # /metrics: liveness and the fleet's latest values, with a host label
    text = get(hub, "/metrics")
    assert 'vigil_hub_host_up{host="db-01"} 1' in text
    assert 'memory_total_bytes{host="db-01"}' in text
    assert "vigil_hub_host_last_seen_timestamp_seconds" in text
    [size] = re.findall(r"^vigil_hub_store_size_bytes (\S+)$", text, re.M)
    assert float(size) >= (hub.config.parent / "hub" / "hub.db").stat().st_size > 0
    # Prometheus' own linter (make test-deps installs it with Debian's prometheus)
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # kill -9 db-01: late, then silent, and HostSilent fires once
    agents["db-01"].proc.send_signal(signal.SIGKILL)
    agents["db-01"].stop()  # reaps it and frees its notify socket for the restart
    wait_for(lambda: statuses(hub)["db-01"] == "silent", 30, "db-01 silent")
    fired = wait_for(
        lambda: [n for n in notifications(alerts_file) if n["state"] == "firing"] or None,
        20,
        "HostSilent through the file notifier",
    )
    assert fired[0]["rule"] == "HostSilent" and fired[0]["host"] == "db-01"
    assert statuses(hub)["web-01"] == "up"
    assert 'vigil_hub_host_up{host="db-01"} 0' in get(hub, "/metrics")
    current = get(hub, "/v1/alerts")["alerts"]
    assert [(a["host"], a["state"]) for a in current if a["name"] == "HostSilent"] == [
        ("db-01", "firing")
    ]
    shown = vigil("hub", "hosts", "--json", "--config", str(hub.config))
    rows = {r["host"]: r for r in json.loads(shown.stdout)["hosts"]}
    assert rows["db-01"]["status"] == "silent" and rows["db-01"]["firing_alerts"] == 1
    assert "silent" in vigil("hub", "hosts", "--config", str(hub.config)).stdout

    # back: resolved, with the gap's length, and gone from the current alerts
    agents["db-01"] = Agent(agents["db-01"].tmp, agents["db-01"].config_path.read_text())
    wait_for(lambda: statuses(hub)["db-01"] == "up", 30, "db-01 up again")
    resolved = wait_for(
        lambda: [n for n in notifications(alerts_file) if n["state"] == "resolved"] or None,
        20,
        "HostSilent resolved",
    )
    assert "gap" in resolved[0]["summary"]
    assert not [a for a in get(hub, "/v1/alerts")["alerts"] if a["name"] == "HostSilent"]
    history = get(hub, "/v1/alerts?state=resolved")["alerts"]
    assert [a["host"] for a in history if a["name"] == "HostSilent"] == ["db-01"]
    assert len([n for n in notifications(alerts_file) if n["state"] == "firing"]) == 1


def test_retire_and_revoke(fleet):
    hub, agents, alerts_file = fleet
    wait_for(lambda: statuses(hub).get("db-01") == "up", 30, "db-01 up")
    assert vigil("hub", "retire", "db-01", "--config", str(hub.config)).returncode == 0
    agents["db-01"].stop()
    wait_for(lambda: statuses(hub)["db-01"] == "retired", 15, "db-01 retired")
    time.sleep(6)  # past silent_after: a retired host never alerts
    assert notifications(alerts_file) == []

    assert vigil("hub", "revoke", "web-01", "--config", str(hub.config)).returncode == 0
    token = (agents["web-01"].tmp / "token").read_text().strip()

    def refused() -> bool:
        from tests.e2e.test_hub_hostile import now_event, raw_batch

        return hub.post(raw_batch("web-01", 10**6, [now_event()]), token)[0] == 401

    wait_for(refused, 15, "web-01's token refused")
    wait_for(lambda: agents["web-01"].events("hub_auth_failed") or None, 30, "the agent told")
    assert vigil("hub", "revoke", "web-01", "--undo", "--config", str(hub.config)).returncode == 0
    wait_for(lambda: not refused(), 15, "web-01's token accepted again")
    assert vigil("hub", "retire", "", "--config", str(hub.config)).returncode == 2


def test_host_silent_is_neither_repeated_nor_forgotten_across_a_hub_restart(fleet, tmp_path):
    hub, agents, alerts_file = fleet
    wait_for(lambda: statuses(hub).get("db-01") == "up", 30, "db-01 up")
    agents["db-01"].stop()
    wait_for(lambda: notifications(alerts_file) or None, 30, "HostSilent fired")
    extra = hub.config.read_text().split('retention_events = "0s"\n', 1)[1]
    hub.stop()
    hub = HubProcess(hub.config.parent, port=hub.port, extra=extra)
    try:
        # past the restart's grace (silent_after) and a few checks: nothing new
        wait_for(lambda: statuses(hub)["db-01"] == "silent", 15, "db-01 still silent")
        time.sleep(6)
        assert [n["state"] for n in notifications(alerts_file)] == ["firing"]
        assert [a["host"] for a in get(hub, "/v1/alerts")["alerts"] if a["name"] == "HostSilent"]
        # and when it comes back, the firing one is resolved
        agents["db-01"] = Agent(agents["db-01"].tmp, agents["db-01"].config_path.read_text())
        wait_for(
            lambda: [n["state"] for n in notifications(alerts_file)] == ["firing", "resolved"],
            30,
            "resolved after the restart",
        )
    finally:
        hub.stop()
