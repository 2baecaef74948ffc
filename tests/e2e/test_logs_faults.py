"""Faults combined the way production has them: the real `logrotate`
rotating while the agent is killed with SIGKILL and restarted, with the
default rate limit (20 events a minute per rule), the default rules and
the default detectors on. The hub's `log_matches_total` for the user's
rule must end at exactly the number of lines written: no line lost to a
stalled reader, none counted twice after a kill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, agent_config
from tests.e2e.test_hub_ingest import HubProcess

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
needs_logrotate = pytest.mark.skipif(
    not os.path.exists(LOGROTATE), reason="logrotate not installed (make test installs it)"
)
TOTAL = 3000
ROTATE_AFTER = (600, 1200, 1800, 2400)
# How often the loop runs the scenario: `VIGIL_FAULT_RUNS=20 pytest -k stall`
# is the 20-of-20 check; the suite runs each variant once.
RUNS = int(os.environ.get("VIGIL_FAULT_RUNS", "1"))


def config(tmp: Path, hub: HubProcess, glob: str) -> str:
    """Everything at its defaults but the one user rule (and short timers)."""
    return agent_config(
        tmp,
        f'host_id = "faults-1"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token("faults-1")}"\n'
        'max_backoff = "1s"\n'
        f"[[logs]]\npaths = [{json.dumps(glob)}]\n"
        "  [[logs.rules]]\n  name = \"seq\"\n  pattern = 'ERROR seq=[0-9]+'\n"
        '  severity = "high"\n',
        interval="1s",
    )


def hub_matches(hub: HubProcess) -> float:
    """The hub's latest log_matches_total{rule="seq"}, summed over file labels."""
    series = hub.get("/v1/metrics?host=faults-1&name=log_matches_total")["series"]
    return sum(s["points"][-1][1] for s in series if s["labels"].get("rule") == "seq")


def wait_matches(hub: HubProcess, want: int, quiet: float = 8.0, timeout: float = 60.0) -> float:
    """Until the hub shows `want`, or the figure stops moving for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        got = hub_matches(hub)
        if got == want:
            return got
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return got
        time.sleep(0.25)
    return hub_matches(hub)


def run_scenario(
    tmp: Path,
    directives: str,
    glob: str,
    kill_after: tuple[int, ...],
    hub_down: tuple[int, int] | None = None,
) -> None:
    logdir = tmp / "log"
    logdir.mkdir()
    log = logdir / "app.log"
    log.touch()
    conf = tmp / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 10\n    missingok\n    {directives}\n}}\n")
    (tmp / "hubside").mkdir()
    hub = HubProcess(tmp / "hubside")
    cfg = config(tmp, hub, str(logdir / glob))
    agent = Agent(tmp, cfg)
    agent.notify.wait("READY=1")
    fh = open(log, "a")  # noqa: SIM115 - reopened at each rotation, closed below
    try:
        for n in range(1, TOTAL + 1):
            fh.write(f"2026-11-28T10:00:00Z app[42]: ERROR seq={n} request failed\n")
            if n % 50 == 0:
                fh.flush()
                time.sleep(0.05)
            if n in ROTATE_AFTER:
                fh.flush()
                subprocess.run(
                    [LOGROTATE, "-f", "-s", str(tmp / "lr.state"), str(conf)], check=True
                )
                if "copytruncate" not in directives:
                    fh.close()  # postrotate: the daemon reopens its log
                    fh = open(log, "a")  # noqa: SIM115
            if n in kill_after:
                fh.flush()
                agent.proc.kill()
                agent.proc.wait()
                agent.stop()
                agent = Agent(tmp, cfg)
            if hub_down and n == hub_down[0]:
                hub.proc.kill()  # the hub dies too: the agent buffers
                hub.proc.wait()
                hub.log.close()
            if hub_down and n == hub_down[1]:
                hub = HubProcess(tmp / "hubside", port=hub.port)
        fh.close()
        agent.notify.wait("READY=1")
        got = wait_matches(hub, TOTAL)
        stalled = [e for e in agent.logs() if e.get("event") == "log_reader_stalled"]
        assert got == TOTAL, f"hub counts {got} of {TOTAL} lines; stalls logged: {stalled}"
        assert agent.stop() == 0
    finally:
        fh.close()
        if agent.proc.poll() is None:
            agent.stop()
        hub.stop()


@needs_logrotate
@pytest.mark.parametrize("run", range(RUNS))
def test_rotations_and_kills_during_a_hub_outage(tmp_path, run):
    """The hub is killed at line 1,000 and back at 2,500; the agent is killed
    at 900 and 2,100, so one restart happens with the hub away."""
    run_scenario(tmp_path, "create", "app.log", (900, 2100), hub_down=(1000, 2500))


@needs_logrotate
@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize(
    ("directives", "glob", "kills"),
    [
        ("create", "app.log", (900, 2100)),
        ("create", "app.log", (700, 1500, 2100)),
        ("create", "app.log", (601, 1201, 2401)),
        ("create\n    compress\n    delaycompress", "app.log*", (900, 2100)),
        ("copytruncate", "app.log", (900, 2100)),
        # the copies in the glob: a kill counted lines twice (issue 18's second read),
        # 3,850 of 3,000 with delaycompress
        ("copytruncate", "app.log*", (601, 1201, 2401)),
        ("copytruncate\n    compress\n    delaycompress", "app.log*", (601, 1201, 2401)),
    ],
    ids=[
        "create",
        "create-3kills",
        "kills-at-rotations",
        "compress-delaycompress",
        "copytruncate",
        "copytruncate-copies-in-glob",
        "copytruncate-delaycompress-copies-in-glob",
    ],
)
def test_rotations_and_kills_with_the_default_rate_limit(tmp_path, directives, glob, kills, run):
    run_scenario(tmp_path, directives, glob, kills)
