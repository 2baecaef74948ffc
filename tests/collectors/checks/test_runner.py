"""The runner on scripted probes: retries, the interval budget, the hard
stop, and the records and transition events a run makes. (The probes
themselves are tested against real servers in the other files.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.core.records import CheckRun, Event, Metric
from agent.core.schema import ConfigError, build
from collectors.checks.model import Outcome, Perf, ProbeContext
from collectors.checks.runner import HARD_STOP, records, run_check
from collectors.checks.sla import SLA
from collectors.checks.tcp import TcpCheck


def check(**kw):
    base = {"name": "api", "type": "tcp", "address": "127.0.0.1:1", "retry_delay": "10ms"}
    return build(TcpCheck, {**base, **kw}, "agent.toml")


def scripted(*outcomes):
    calls = []

    async def probe(ctx):
        calls.append(time.monotonic())
        return outcomes[min(len(calls), len(outcomes)) - 1]

    return probe, calls


OK = Outcome(True, "ok", "", 0.01)
DOWN = Outcome(False, "critical", "connection refused", 0.001)


def run(probe, cfg):
    return asyncio.run(run_check(probe, cfg, ProbeContext()))


def test_a_probe_that_fails_once_then_passes_is_ok_with_two_attempts():
    probe, calls = scripted(DOWN, OK)
    result = run(probe, check(retries=1))
    assert result.outcome.ok and len(result.attempts) == 2
    assert calls[1] - calls[0] >= 0.01  # retry_delay


def test_retries_stop_at_the_first_pass_and_give_up_after_the_last():
    probe, calls = scripted(DOWN)
    result = run(probe, check(retries=3))
    assert not result.outcome.ok and len(calls) == 4
    probe, calls = scripted(OK)
    assert run(probe, check(retries=3)).outcome.ok and len(calls) == 1


def test_retries_never_push_a_run_past_its_interval():
    probe, calls = scripted(DOWN)
    run(probe, check(retries=10, interval="2s", timeout="1s", retry_delay="400ms"))
    # every attempt could finish within the interval; one more could not
    assert calls[-1] - calls[0] + 1.0 <= 2.0
    assert calls[-1] - calls[0] + 0.4 + 1.0 > 2.0
    assert len(calls) == 3  # at 0, 0.4 and 0.8 s


def test_a_probe_that_ignores_its_timeout_is_stopped():
    async def hangs(ctx):
        await asyncio.sleep(3600)

    start = time.monotonic()
    result = run(hangs, check(retries=0, timeout="200ms"))
    assert time.monotonic() - start < 0.2 + HARD_STOP + 1
    assert result.outcome.status == "critical" and "timed out after 0.2s" in result.outcome.message


def test_a_probe_that_raises_is_unknown_not_ok():
    async def broken(ctx):
        raise RuntimeError("bug")

    result = run(broken, check(retries=0))
    assert result.outcome.status == "unknown" and "RuntimeError: bug" in result.outcome.message


def test_records_of_a_run():
    probe, _ = scripted(
        DOWN,
        Outcome(
            True,
            "ok",
            "DISK OK",
            0.25,
            status_code=200,
            cert_expiry_days=5.5,
            cert={"subject": "CN=a"},
            perf=(Perf("/", 1e9, "bytes", warn=9e9, crit=9.5e9),),
        ),
    )
    cfg = check(retries=1, labels={"team": "web"})
    sla = SLA()
    out = records(run(probe, cfg), 1_800_000_000.0, sla)
    (rec,) = [r for r in out if isinstance(r, CheckRun)]
    assert rec.ok and rec.status == "ok" and rec.latency == 0.25
    assert [a["status"] for a in rec.attempts] == ["critical", "ok"]
    assert rec.fields["status_code"] == 200 and rec.fields["certificate_expiry_days"] == 5.5
    metrics = {
        (m.name, m.labels.get("window"), m.labels.get("quantile")): m
        for m in out
        if isinstance(m, Metric)
    }
    labels = {"team": "web", "check": "api", "type": "tcp"}
    assert metrics[("check_up", None, None)].value == 1.0
    assert metrics[("check_up", None, None)].labels == labels
    assert metrics[("check_attempts", None, None)].value == 2
    assert metrics[("check_status_code", None, None)].value == 200
    assert metrics[("check_certificate_expiry_seconds", None, None)].value == 5.5 * 86400
    assert metrics[("check_perfdata", None, None)].labels == {
        **labels,
        "label": "/",
        "unit": "bytes",
    }
    assert metrics[("check_perfdata_warning", None, None)].value == 9e9
    assert metrics[("check_availability_ratio", "30d", None)].value == 1.0
    assert metrics[("check_latency_seconds", "1h", "0.95")].value == pytest.approx(0.25, rel=0.01)
    assert not [r for r in out if isinstance(r, Event)]  # a first run that passes: no event


def test_transitions_are_events_once():
    sla = SLA()
    cfg = check(retries=0)
    states = [True, False, False, True, True]
    events = []
    for i, ok in enumerate(states):
        probe, _ = scripted(OK if ok else DOWN)
        events += [
            r for r in records(run(probe, cfg), 1000.0 + 60 * i, sla) if isinstance(r, Event)
        ]
    assert [e.fields["transition"] for e in events] == ["failed", "recovered"]
    assert events[0].message == "check api failed: connection refused"
    assert events[1].message == "check api recovered after 2m"


@pytest.mark.parametrize(
    ("table", "path", "message"),
    [
        ({"type": "http"}, "checks[0].url", "required: a string"),
        ({"type": "dns", "query": ""}, "checks[0].query", "must not be empty"),
        ({"type": "command", "command": []}, "checks[0].command", "must not be empty"),
        ({"type": "ftp"}, "checks[0].type", "expected one of 'command', 'dns', 'http'"),
        ({"type": "tcp", "address": "nohost"}, "checks[0].address", 'expected "host:port"'),
        (
            {"type": "tcp", "address": "a:1", "body_contains": "x"},
            "checks[0].body_contains",
            "not used by type 'tcp' (only by 'http')",
        ),
        ({"type": "http", "url": "ftp://x"}, "checks[0].url", "http:// or https://"),
        (
            {"type": "dns", "query": "x", "interval": "5s", "timeout": "10s"},
            "checks[0].timeout",
            "must not exceed interval",
        ),
        (
            {"type": "command", "command": ["/bin/true"], "labels": {"check": "x"}},
            "checks[0].labels",
            "set by the agent",
        ),
        (
            {"type": "http", "url": "http://x/", "expect_status": [700]},
            "checks[0].expect_status[0]",
            "100-599",
        ),
        (
            {"type": "http", "url": "http://x/", "body_json": "{nope"},
            "checks[0].body_json",
            "not valid JSON",
        ),
    ],
)
def test_bad_check_tables_name_the_key(table, path, message):
    from agent.config import Config

    with pytest.raises(ConfigError) as err:
        build(Config, {"checks": [{"name": "c", **table}]}, "/etc/vigil/agent.toml")
    text = str(err.value)
    assert f"/etc/vigil/agent.toml: {path}: " in text and message in text


def test_check_names_are_unique():
    from agent.config import Config

    table = {"type": "dns", "query": "localhost"}
    with pytest.raises(ConfigError, match=r"checks\[1\].name: check name 'a' is used twice"):
        build(Config, {"checks": [{"name": "a", **table}, {"name": "a", **table}]}, "f.toml")


def test_the_default_timeout_is_ten_seconds_or_the_interval():
    assert check().timeout == 10.0
    assert check(interval="4s").timeout == 4.0
    assert check(interval="4s", timeout="1s").timeout == 1.0
