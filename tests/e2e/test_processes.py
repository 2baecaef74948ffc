"""Issue 18: a process group over real child processes, through the real
agent: the count follows kills, a restart behind a pidfile is counted, and
when the last one dies the default ProcessDown rule fires."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port
from tests.e2e.test_access_logs import samples


def worker(marker: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1e6)", marker])


def test_a_group_counts_its_processes_a_restart_and_fires_when_all_are_gone(tmp_path):
    marker = f"vigil-test-worker-{tmp_path.name}"
    workers = [worker(marker) for _ in range(3)]
    pidfile = tmp_path / "db.pid"
    db = worker(f"{marker}-db")
    pidfile.write_text(f"{db.pid}\n")
    port = free_port()
    ledger = tmp_path / "alerts.jsonl"
    config = agent_config(
        tmp_path,
        f'[[processes]]\nname = "workers"\nmatch = {{ cmdline = "{marker}$" }}\n'
        f'[[processes]]\nname = "db"\nmatch = {{ pidfile = "{pidfile}" }}\n'
        f'[[notifiers]]\nname = "ledger"\ntype = "file"\npath = "{ledger}"\n'
        'severities = ["high"]\n',
        port=port,
    )
    agent = Agent(tmp_path, config)

    def up(group: str) -> float | None:
        return samples(port, "process_group_up").get(frozenset({("group", group)}))

    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: up("workers") == 3 and up("db") == 1, 30, "3 workers and the db")
        workers[0].kill()
        workers[0].wait()
        wait_for(lambda: up("workers") == 2, 30, "2 workers")
        # the db restarts: a new process, its pid in the file
        db.kill()
        db.wait()
        db = worker(f"{marker}-db")
        pidfile.write_text(f"{db.pid}\n")
        restarts = frozenset({("group", "db")})
        wait_for(
            lambda: samples(port, "process_group_restarts_total").get(restarts) == 1.0,
            30,
            "the db's restart counted",
        )
        assert up("db") == 1
        for w in workers[1:]:
            w.kill()
            w.wait()
        wait_for(lambda: up("workers") == 0, 30, "no worker")

        def fired() -> list[dict] | None:
            if not ledger.exists():
                return None
            alerts = [json.loads(line) for line in ledger.read_text().splitlines()]
            return [a for a in alerts if a.get("rule") == "ProcessDown"] or None

        alert = wait_for(fired, 40, "ProcessDown")[0]
        assert alert["labels"]["group"] == "workers"
        assert alert["state"] == "firing"
    finally:
        for w in [*workers, db]:
            w.kill()
            w.wait()
        assert agent.stop() == 0
