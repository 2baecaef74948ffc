"""The real Loghub samples through a real agent: what an operator sees at
the agent's /metrics and at the hub."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, wait_http
from tests.e2e.test_hub_ingest import HubProcess

LOGHUB = Path(__file__).parents[1] / "fixtures" / "loghub"


def expected_auth_failures() -> Counter[str]:
    """Failed logins per remote, from the labelled CSV: sshd's PAM lines
    reporting an authentication failure with a remote host."""
    counts: Counter[str] = Counter()
    with open(LOGHUB / "Linux_2k.log_structured.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Component"] == "sshd(pam_unix)" and row["EventTemplate"].startswith(
                "authentication failure;"
            ):
                remote = re.search(r"rhost=(\S*)", row["Content"])
                if remote and remote.group(1):
                    counts[remote.group(1)] += 1
    return counts


def metrics(api: int, name: str) -> dict[str, float]:
    """One metric's samples from the agent's /metrics, by their only label's value."""
    out = {}
    for line in wait_http(f"http://127.0.0.1:{api}/metrics").splitlines():
        if line.startswith(name + "{"):
            value = re.search(r'="((?:[^"\\]|\\.)*)"', line).group(1)
            out[value] = float(line.rsplit(" ", 1)[1])
    return out


def test_failed_logins_apache_errors_and_zookeeper_exceptions(tmp_path):
    logdir = tmp_path / "log"
    logdir.mkdir()
    for name in ("Linux_2k.log", "Apache_2k.log", "Zookeeper_2k.log"):
        shutil.copy(LOGHUB / name, logdir / name)
        with open(logdir / name, "a") as fh:
            fh.write("\n")  # the samples' last lines lack one; a partial line waits for it
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    api = free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "samples"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token("samples")}"\n'
        f'[[logs]]\npaths = ["{logdir}/*.log"]\nstart_at = "beginning"\n'
        "events_per_minute = 100000\n",
        interval="500ms",
        port=api,
    )
    agent = Agent(tmp_path, config)
    try:
        agent.notify.wait("READY=1")
        expected = expected_auth_failures()
        assert sum(expected.values()) > 400  # the sample is what we think it is
        wait_for(
            lambda: metrics(api, "auth_failures_total") == expected,
            timeout=30,
            what="auth_failures_total per remote equal to the CSV's counts",
        )

        def events():
            found = hub.get_all("/v1/events?host=samples&kind=log", "events")
            return [e for e in found if e["fields"].get("rule") and "detector" not in e["fields"]]

        apache_errors = [
            line
            for line in (LOGHUB / "Apache_2k.log").read_text().splitlines()
            if "[error]" in line
        ]
        zk_exceptions = [
            line
            for line in (LOGHUB / "Zookeeper_2k.log").read_text().splitlines()
            if "Exception" in line
        ]

        def found_all():
            lines = {e["fields"]["line"] for e in events()}
            return set(apache_errors) | set(zk_exceptions) <= lines

        wait_for(found_all, timeout=30, what="every Apache [error] and ZooKeeper exception line")
        by_rule = Counter(e["fields"]["rule"] for e in events())
        assert by_rule["apache_error"] == len(apache_errors)
        # a brute-force finding reached the hub as a security event
        security = hub.get("/v1/events?host=samples&kind=security")["events"]
        assert security and all(e["fields"]["detector"] == "auth" for e in security)
        # the matches counter agrees with the events, file by file
        matches = [
            line
            for line in wait_http(f"http://127.0.0.1:{api}/metrics").splitlines()
            if line.startswith("log_matches_total{") and 'rule="apache_error"' in line
        ]
        assert [float(m.rsplit(" ", 1)[1]) for m in matches] == [len(apache_errors)]
        status = json.loads(wait_http(f"http://127.0.0.1:{api}/status"))
        assert status["errors"] == 0
    finally:
        assert agent.stop() == 0
        hub.stop()
