"""The Grafana dashboard (packaging/grafana/vigil-fleet.json, issue 15 item 4)
against real data: a real hub remote-writes into Debian's VictoriaMetrics
what a real `vigil run` agent (with a passing and a failing check) and a
few simulated hosts pushed; then every panel's PromQL, with Grafana's
variables substituted, runs at VictoriaMetrics' /api/v1/query and
/api/v1/query_range and must return data. No Grafana is needed (it is not
in Debian's main archive): the dashboard's structure is checked lightly."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core import protocol
from bench.hub_ingest import sim_cycle
from bench.tsdb import VICTORIA, VictoriaMetrics
from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port
from tests.e2e.test_hub_forward import forward_table
from tests.e2e.test_hub_ingest import HubProcess

pytestmark = pytest.mark.timeout(240)
needs_vm = pytest.mark.skipif(not os.path.exists(VICTORIA), reason="victoria-metrics missing")

DASHBOARD = Path(__file__).resolve().parents[2] / "packaging" / "grafana" / "vigil-fleet.json"
HOST = "agent-01"
SIMULATED = ["sim-web-1", "sim-db-2"]
# what Grafana puts in place of its own variables (a range of an hour, a
# scrape-like interval); ${datasource} is not in any expression
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$host": HOST}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every target."""
    return [
        (p["title"], t["expr"])
        for p in panels(dashboard)
        if p["type"] != "row"
        for t in p["targets"]
    ]


def substitute(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value).replace("${" + name[1:] + "}", value)
    return expr


def test_dashboard_structure() -> None:
    d = load()
    assert d["uid"] == "vigil-fleet" and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    host = variables["host"]
    assert host["type"] == "query" and host["datasource"]["uid"] == "${datasource}"
    assert host["query"]["query"] == "label_values(system_uptime_seconds, host)"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    titles = [p["title"] for p in panels(d) if p["type"] == "row"]
    assert titles == ["Fleet overview", "Host detail: $host"]
    for p in panels(d):
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}", p["title"]
            # only the variables the test knows how to substitute
            left = re.findall(r"\$\{?\w+", substitute(t["expr"]))
            assert not left, (p["title"], left)
    # every metric a panel names is one the agents send (docs/metrics.md)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", _metrics_doc(), re.M))
    named = {
        m
        for _, e in targets(d)
        for m in re.findall(r"\b([a-z][a-z0-9_]*)\s*(?:\{|\)|\s*[=><]|$)", e)
        if "_" in m and m not in {"count_over_time", "avg_over_time", "label_values"}
    }
    assert named and named <= documented, named - documented


def _metrics_doc() -> str:
    return (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics fed by a real hub: a real agent with two checks (one
    failing), and simulated hosts' batches, a few intervals of each."""
    vm = VictoriaMetrics(tmp_path / "vm")
    hub = HubProcess(tmp_path, extra=forward_table(vm.write_url))
    agent = None
    try:
        (tmp_path / "agent").mkdir()
        (tmp_path / "agent" / "token").write_text(hub.token(HOST) + "\n")
        closed = free_port()
        config = agent_config(
            tmp_path / "agent",
            f'host_id = "{HOST}"\n[hub]\nurl = "{hub.url}"\n'
            f'token_file = "{tmp_path / "agent" / "token"}"\n'
            f'[[checks]]\nname = "hub"\ntype = "http"\nurl = "{hub.url}/healthz"\n'
            'interval = "1s"\ntimeout = "1s"\nretries = 0\n'
            f'[[checks]]\nname = "db"\ntype = "tcp"\naddress = "127.0.0.1:{closed}"\n'
            'interval = "1s"\ntimeout = "500ms"\nretries = 0\n',
            interval="1s",
        )
        agent = Agent(tmp_path / "agent", config)
        cycle = sim_cycle()
        for host in SIMULATED:
            token, stream, seq = hub.token(host), secrets.token_hex(16), 1
            for k in range(3):
                ts = time.time() - 20 + 10 * k
                records = [dict(r, ts=ts) for r in cycle]
                body = protocol.encode_batch(host, stream, seq, records, "test", ts, 10.0)
                status, answer = hub.post(protocol.compress(body), token)
                assert status == 200, answer
                seq += len(records)

        missing: list[str] = []

        def ready() -> bool:
            assert agent is not None and agent.proc.poll() is None, (
                agent and agent.log_path.read_text()
            )
            vm.flush()
            missing.clear()
            for expr in (
                f'count_over_time(system_uptime_seconds{{host="{HOST}"}}[1m]) >= 4',
                f'count_over_time(check_up{{host="{HOST}", check="db"}}[1m]) >= 3',
                f'check_availability_ratio{{host="{HOST}"}}',
                f'system_uptime_seconds{{host="{SIMULATED[-1]}"}}',
            ):
                if not query(vm, expr):
                    missing.append(expr)
            return not missing

        try:
            wait_for(ready, 90, "the agent's and the simulated hosts' samples in VictoriaMetrics")
        except BaseException:
            print("still empty:", missing, "\nagent log:", agent.log_path.read_text()[-3000:])
            raise
        yield vm
    finally:
        if agent is not None:
            agent.stop()
        hub.stop()
        vm.stop()


def query(vm: VictoriaMetrics, expr: str, **extra: str) -> list[Any]:
    path = "/api/v1/query_range" if "step" in extra else "/api/v1/query"
    try:
        answer = vm.get(path, query=expr, **extra)
    except urllib.error.HTTPError as e:  # a query that does not parse: 422 with the reason
        raise AssertionError(f"{expr}: {e.code} {e.read().decode(errors='replace')}") from None
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]  # type: ignore[no-any-return]


@needs_vm
def test_every_panel_returns_data(fleet: VictoriaMetrics) -> None:
    vm = fleet
    # the host variable, as Grafana asks for label_values(METRIC, host)
    hosts = vm.get(
        "/api/v1/label/host/values", **{"match[]": "system_uptime_seconds", "start": "0"}
    )["data"]
    assert set(hosts) >= {HOST, *SIMULATED}
    now = time.time()
    empty = []
    checked = 0
    for title, expr in targets(load()):
        promql = substitute(expr)
        instant = query(vm, promql, time=f"{now:.3f}")
        # 1 s steps: the agent has run for a few seconds only, and the range
        # points, aligned to the step, must fall among its samples
        series = query(vm, promql, start=f"{now - 120:.3f}", end=f"{now:.3f}", step="1s")
        if not instant or not series:
            empty.append((title, promql))
        checked += 1
    assert checked >= 30
    assert not empty, f"panels without data: {empty}"


@needs_vm
def test_fleet_panels_count_every_host(fleet: VictoriaMetrics) -> None:
    """The overview's host count and failing checks say what was pushed."""
    d = load()
    by_title = {title: substitute(expr) for title, expr in targets(d)}
    (hosts,) = query(fleet, by_title["Hosts reporting"])
    assert float(hosts["value"][1]) == 1 + len(SIMULATED)
    failing = query(fleet, by_title["Failing checks"])
    assert {(s["metric"]["host"], s["metric"]["check"]) for s in failing} == {(HOST, "db")}
