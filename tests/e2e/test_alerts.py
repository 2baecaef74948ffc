"""Alerts end to end, with the network to the hub down: a rule on a
log-rule counter the test drives by writing lines fires locally (exec and
file notifiers), resolves when the lines stop, survives a restart without
notifying twice, and its history reaches the hub once the hub is up."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, vigil, wait_http
from tests.e2e.test_hub_ingest import HubProcess


def config(tmp: Path, log: Path, hub_port: int, token: str, api: int) -> str:
    script = tmp / "notify.sh"
    script.write_text(
        "#!/bin/sh\n"
        # env.txt first: the test reads it once it sees the marker file
        'echo "$VIGIL_ALERT_NAME $VIGIL_ALERT_SEVERITY" >> "$MARKERS/env.txt"\n'
        'cat > "$MARKERS/.partial.$$"\n'
        'mv "$MARKERS/.partial.$$" "$MARKERS/$VIGIL_ALERT_STATE.$(date +%s%N).json"\n'
    )
    script.chmod(0o755)
    return agent_config(
        tmp,
        f'host_id = "alerting-1"\n[hub]\nurl = "http://127.0.0.1:{hub_port}"\n'
        f'token = "{token}"\nmax_backoff = "500ms"\n'
        '[buffer]\nflush_interval = "200ms"\n'
        f'[[logs]]\npaths = ["{log}"]\nstart_at = "beginning"\ndefault_rules = false\n'
        'detectors = []\npoll_interval = "100ms"\n'
        '  [[logs.rules]]\n  name = "payment_failed"\n  pattern = "payment failed"\n'
        '[alerting]\ndefault_rules = false\nevaluate_every = "200ms"\n'
        "[[alerts]]\n"
        'name = "PaymentsFailing"\n'
        "expr = 'increase(log_matches_total{rule=\"payment_failed\"}[10s]) >= 3'\n"
        'for = "1s"\nseverity = "critical"\nrepeat = "0s"\n'
        'summary = "{value:.0f} failed payments in {file}"\n'
        'notify = ["remediate", "ledger"]\n'
        '[[notifiers]]\nname = "remediate"\ntype = "exec"\n'
        f'command = ["{script}"]\ntimeout = "5s"\n'
        f'[[notifiers]]\nname = "ledger"\ntype = "file"\npath = "{tmp / "alerts.jsonl"}"\n',
        interval="250ms",
        port=api,
    )


def markers(directory: Path, state: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob(f"{state}.*.json"))]


def test_alert_fires_offline_resolves_survives_a_restart_and_reaches_the_hub(tmp_path):
    log = tmp_path / "app.log"
    log.touch()
    marks = tmp_path / "markers"
    marks.mkdir()
    (tmp_path / "hubside").mkdir()
    hub_port, api = free_port(), free_port()
    token_hub = HubProcess(tmp_path / "hubside", hub_port)  # only to make the token
    token = token_hub.token("alerting-1")
    token_hub.stop()
    cfg = config(tmp_path, log, hub_port, token, api)
    env = {"MARKERS": str(marks)}
    agent = Agent(tmp_path, cfg, env=env)
    hub = None
    try:
        agent.notify.wait("READY=1")
        with open(log, "a") as fh:  # the hub is down the whole time
            for i in range(5):
                fh.write(f"2026-11-26 ERROR payment failed order={i}\n")
        started = time.monotonic()
        fired = wait_for(lambda: markers(marks, "firing"), timeout=15, what="the exec notifier")
        # within `for` (1 s) plus an interval or two of the collector and the tick
        assert time.monotonic() - started < 6
        alert = fired[0]
        assert alert["rule"] == "PaymentsFailing" and alert["severity"] == "critical"
        assert alert["summary"] == f"5 failed payments in {log}"
        assert (marks / "env.txt").read_text().startswith("PaymentsFailing critical")
        ledger = tmp_path / "alerts.jsonl"
        wait_for(lambda: ledger.exists() and ledger.read_text().strip(), what="the file notifier")
        assert json.loads(ledger.read_text().splitlines()[0])["state"] == "firing"

        # a restart while firing: nothing notified again, the state is kept
        assert agent.stop() == 0
        agent = Agent(tmp_path, cfg, env=env)
        agent.notify.wait("READY=1")
        shown = vigil("alerts", "--config", str(agent.config_path), timeout=30).stdout
        assert "PaymentsFailing" in shown and "FIRING" in shown
        # no new lines: after the 10 s window the condition clears and it resolves once
        wait_for(lambda: markers(marks, "resolved"), timeout=20, what="the resolution")
        assert len(markers(marks, "firing")) == 1, "notified again after the restart"
        assert [json.loads(x)["state"] for x in ledger.read_text().splitlines()] == [
            "firing",
            "resolved",
        ]

        # the hub comes up: the history (pending, firing, resolved) arrives
        hub = HubProcess(tmp_path / "hubside", hub_port)

        def history():
            events = hub.get("/v1/events?host=alerting-1&kind=alert")["events"]
            return sorted((e["ts"], e["fields"]["state"]) for e in events) or None

        wait_for(
            lambda: [s for _, s in history() or []] == ["pending", "firing", "resolved"],
            timeout=20,
            what="the alert's transitions at the hub",
        )
        status = json.loads(wait_http(f"http://127.0.0.1:{api}/status"))
        assert status["alerts"]["notifiers"]["remediate"]["sent"] == 1
    finally:
        assert agent.stop() == 0
        if hub is not None:
            hub.stop()
    assert os.path.exists(marks / "env.txt")
