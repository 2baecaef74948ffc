"""Hostile log lines through a real agent to a real hub: integers beyond
64 bits, nesting too deep for the parser, NaN and infinities, non-ASCII,
huge fields. Each line is matched or not as its text says; what reaches the
hub is reduced to what every stage can carry; no line blocks the commit of
the others or of another [[logs]] table."""

from __future__ import annotations

import json

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, vigil
from tests.e2e.test_hub_ingest import HubProcess
from tests.e2e.test_logs import agent_metric

DEEP = "[" * 5000 + "]" * 5000
MATCHING = [
    '{"message":"failed x","code":99999999999999999999999}',
    '{"message":"nan","code":NaN}',
    '{"message":"non ascii é","code":"é—日本語"}',
    '{"ts":"2100-01-01T00:00:00Z","message":"from the future","code":"E5"}',
    '{"message":"big","code":"E6","blob":"' + "x" * 50000 + '"}',
    '{"message":"object code","code":{"deep":' + "[" * 40 + "1" + "]" * 40 + "}}",
    '{"message":"negative","code":-99999999999999999999999999999999999}',
    '{"message":"infinite","code":1e400}',
    '{"message":"lone surrogate","code":"\\ud800"}',  # JSON can spell it, UTF-8 cannot
]
# the failed-login detector's state must take what JSON can spell, too
AUTH = (
    '{"message":"Nov 28 10:00:00 web sshd[7]: '
    'Failed password for invalid user x\\udc80y from 10.9.8.7 port 22 ssh2"}'
)


def test_hostile_json_lines_neither_block_nor_blind_the_agent(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir()
    (logdir / "app.json").touch()
    (logdir / "plain.log").touch()
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "hostile-1"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token("hostile-1")}"\n'
        f'max_backoff = "1s"\n[[logs]]\npaths = ["{logdir / "app.json"}"]\nformat = "json"\n'
        '  [[logs.rules]]\n  name = "code"\n  match = { code = ".+" }\n'
        f'[[logs]]\npaths = ["{logdir / "plain.log"}"]\n'
        '  [[logs.rules]]\n  name = "boom"\n  pattern = "boom"\n',
        interval="500ms",
        port=api,
    )
    agent = Agent(tmp_path, config)
    try:
        agent.notify.wait("READY=1")
        with open(logdir / "app.json", "a") as fh:
            # one write: the deep line and the next one arrive in the same read
            deep = '{"code":"E2","deep":' + DEEP + "}"
            fh.write("\n".join([*MATCHING, AUTH, deep, '{"code":"after"}']))
            fh.write("\n")
        with open(logdir / "plain.log", "a") as fh:
            fh.write("boom 1\nboom 2\n")

        def matches(rule: str) -> float:
            series = hub.get("/v1/metrics?host=hostile-1&name=log_matches_total")["series"]
            return sum(s["points"][-1][1] for s in series if s["labels"]["rule"] == rule)

        wait_for(lambda: matches("code") == len(MATCHING) + 1, 30, "every matching JSON line")
        wait_for(lambda: matches("boom") == 2, 30, "the other table's lines")
        events = hub.get("/v1/events?host=hostile-1&kind=log&limit=1000")["events"]
        codes = [e["fields"].get("fields", {}).get("code") for e in events]
        assert "99999999999999999999999" in codes  # too big for msgpack: kept as text
        assert "-99999999999999999999999999999999999" in codes
        assert "nan" in codes and "inf" in codes  # the hub's JSON has no NaN
        assert "é—日本語" in codes and "after" in codes and "\ufffd" * 3 in codes
        failures = hub.get("/v1/metrics?host=hostile-1&name=auth_failures_total")["series"]
        assert [(s["labels"]["remote"], s["points"][-1][1]) for s in failures] == [("10.9.8.7", 1)]
        assert len(json.dumps(events)) < 200_000  # huge fields were capped
        read = agent_metric(api, "log_lines_read_total", file=str(logdir / "app.json"))
        assert read == len(MATCHING) + 3  # the deep and auth lines too, no rule's
        assert agent_metric(api, "log_commit_errors_total") == 0
        status = vigil("status", "--config", str(agent.config_path), timeout=30).stdout
        assert "commit error" not in status and "FAILING" not in status
        assert agent.stop() == 0
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        hub.stop()
