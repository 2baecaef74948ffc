"""Synthetic checks end to end: a real agent probes a real HTTP server, a
closed port and a Nagios plugin; the check records, metrics and the
failure event reach a real hub; a flapping target is OK on its retry; a
restart keeps the SLA counters and does not announce a failure twice;
`vigil checks run NAME` and `vigil status` show the results."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, vigil, wait_http
from tests.e2e.test_hub_ingest import HubProcess

CHECK_DUMMY = Path("/usr/lib/nagios/plugins/check_dummy")


class Target(BaseHTTPRequestHandler):
    flaky_calls = 0

    def do_GET(self) -> None:
        if self.path == "/flaky":
            Target.flaky_calls += 1
            status, body = (500, b"oops") if Target.flaky_calls % 2 else (200, b"fine")
        else:
            status, body = 200, b"healthy and well"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def config(tmp: Path, hub_port: int, token: str, web: int, closed: int, api: int) -> str:
    checks = (
        f'[[checks]]\nname = "web"\ntype = "http"\nurl = "http://127.0.0.1:{web}/ok"\n'
        'body_contains = "healthy"\ninterval = "1s"\ntimeout = "500ms"\nlabels = {team = "shop"}\n'
        f'[[checks]]\nname = "flaky"\ntype = "http"\nurl = "http://127.0.0.1:{web}/flaky"\n'
        'interval = "1s"\ntimeout = "500ms"\nretries = 1\nretry_delay = "100ms"\n'
        f'[[checks]]\nname = "closed"\ntype = "tcp"\naddress = "127.0.0.1:{closed}"\n'
        'interval = "1s"\ntimeout = "500ms"\nretries = 0\n'
        f'[[checks]]\nname = "dummy"\ntype = "command"\n'
        f'command = ["{CHECK_DUMMY}", "1", "degraded"]\ninterval = "1s"\ntimeout = "500ms"\n'
        "retries = 0\n"
    )
    return agent_config(
        tmp,
        f'host_id = "prober-1"\n[host]\nenabled = []\n'
        f'[hub]\nurl = "http://127.0.0.1:{hub_port}"\ntoken = "{token}"\n'
        f'[buffer]\nflush_interval = "200ms"\n{checks}',
        interval="1s",
        port=api,
    )


def test_checks_reach_the_hub_retry_and_survive_a_restart(tmp_path):
    if not CHECK_DUMMY.exists():
        pytest.skip("needs check_dummy from Debian's monitoring-plugins-basic (make test-deps)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    cfg = config(tmp_path, hub.port, hub.token("prober-1"), server.server_port, free_port(), api)
    agent = Agent(tmp_path, cfg)
    try:
        agent.notify.wait("READY=1")

        def runs():
            got = hub.get("/v1/events?host=prober-1&kind=check&limit=1000")["events"]
            by = {}
            for e in got:  # the hub lists runs and check events as kind "check"
                if "name" in e:
                    by.setdefault(e["name"], []).append(e)
            return by if len(by) == 4 else None

        by_name = wait_for(runs, timeout=20, what="a run of every check at the hub")
        web, flaky = by_name["web"][-1], by_name["flaky"][-1]
        closed, dummy = by_name["closed"][-1], by_name["dummy"][-1]
        assert web["ok"] and web["status"] == "ok" and web["fields"]["status_code"] == 200
        assert web["labels"] == {"team": "shop", "check": "web", "type": "http"}
        # every run of the flapping target fails once and passes on its retry
        assert flaky["ok"] and [a["status"] for a in flaky["attempts"]] == ["critical", "ok"]
        assert not closed["ok"] and "refused" in closed["message"]
        assert dummy["status"] == "warning" and dummy["message"].startswith("WARNING")

        def failure_events():
            got = hub.get("/v1/events?host=prober-1&kind=check&limit=1000")["events"]
            return [e for e in got if "name" not in e and "transition" in e["fields"]]

        events = wait_for(failure_events, what="the failure events at the hub")
        assert sorted(e["fields"]["check"] for e in events) == ["closed", "dummy"]
        assert all(e["fields"]["transition"] == "failed" for e in events)

        def latest(name, check, **labels):
            series = hub.get(f"/v1/metrics?host=prober-1&name={name}")["series"]
            for s in series:
                if s["labels"].get("check") == check and all(
                    s["labels"].get(k) == v for k, v in labels.items()
                ):
                    return s["points"][-1][1]
            return None

        assert wait_for(lambda: latest("check_up", "web") == 1.0, what="check_up of web")
        assert latest("check_up", "closed") == 0.0
        assert latest("check_status", "dummy") == 1.0
        assert latest("check_availability_ratio", "flaky", window="1h") == 1.0
        assert latest("check_availability_ratio", "closed", window="30d") == 0.0

        status = json.loads(wait_http(f"http://127.0.0.1:{api}/status"))
        shown = {c["name"]: c for c in status["checks"]}
        assert shown["closed"]["status"] == "critical" and shown["web"]["availability"]["1h"] == 1
        listing = vigil("checks", "--config", str(agent.config_path)).stdout
        assert "closed" in listing and "CRITICAL" in listing and "100.00%" in listing

        # vigil checks run NAME: one run now, exit 0 when it passes, 1 when not
        ok = vigil("checks", "run", "web", "--config", str(agent.config_path))
        assert ok.returncode == 0 and ok.stdout.startswith("web (http): OK")
        assert "status code: 200" in ok.stdout
        failed = vigil("checks", "run", "closed", "--config", str(agent.config_path), "--json")
        assert failed.returncode == 1 and json.loads(failed.stdout)["status"] == "critical"
        unknown = vigil("checks", "run", "nope", "--config", str(agent.config_path))
        assert unknown.returncode == 2 and "no check named 'nope'" in unknown.stderr

        # a restart: counters go on from where they were, no second failure event
        runs_before = wait_for(lambda: latest("check_runs_total", "web"), what="runs of web")
        assert agent.stop() == 0
        agent = Agent(tmp_path, cfg)
        agent.notify.wait("READY=1")
        wait_for(
            lambda: (latest("check_runs_total", "web") or 0) > runs_before + 1,
            timeout=15,
            what="runs after the restart",
        )
        assert len(failure_events()) == 2, "a failure announced again after the restart"
    finally:
        assert agent.stop() == 0
        hub.stop()
        server.shutdown()
        server.server_close()
