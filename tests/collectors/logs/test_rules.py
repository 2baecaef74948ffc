"""Rules and events on literal inputs (collectors/logs/rules.py): what an
event carries, rate limits, JSON logs, and both matching engines agreeing
on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.core.records import Event
from collectors.logs.config import LogsConfig, RuleConfig
from collectors.logs.detectors.base import build_all
from collectors.logs.files import Chunk
from collectors.logs.matcher import available_engines
from collectors.logs.rules import RateLimiter, Rule, TableProcessor

LOGHUB = Path(__file__).parents[2] / "fixtures" / "loghub"
NOW = 1_800_000_000.0  # a minute boundary is at a multiple of 60


def processor(engine: str = "auto", **options) -> tuple[TableProcessor, dict]:
    options.setdefault("paths", ("/var/log/app.log",))
    options.setdefault("detectors", ())
    config = LogsConfig(**options)
    detectors = build_all()
    matches: dict = {}
    limiter = RateLimiter(config.events_per_minute)
    return TableProcessor(config, detectors, matches, limiter, engine), matches


def run(proc: TableProcessor, text: str, label: str = "/var/log/app.log", now: float = NOW):
    out: list[Event] = []
    data = text.encode()
    proc.process(Chunk(label, data, data.count(b"\n")), now, out.append)
    return out


def test_an_event_carries_the_line_its_named_groups_and_the_lines_before_it():
    rule = RuleConfig(
        name="db_down",
        pattern=r"database connection failed: (?P<reason>\w+) host=(?P<host>\S+)",
        severity="critical",
        fields=("host",),
    )
    proc, matches = processor(rules=(rule,), default_rules=False, context_lines=2)
    run(proc, "a\nb\n")
    events = run(proc, "c\ndatabase connection failed: refused host=db1\nd\r\n")
    assert len(events) == 1
    e = events[0]
    assert (e.type, e.severity) == ("log", "critical")
    assert e.fields["fields"] == {"host": "db1"}  # only the groups asked for
    assert e.fields["context"] == ["b", "c"]  # one from the previous chunk
    assert e.fields["line"] == "database connection failed: refused host=db1"
    assert matches == {("db_down", "/var/log/app.log"): 1}


def test_a_storm_is_counted_exactly_and_summarised_not_flooded():
    rule = RuleConfig(name="boom", pattern="boom")
    proc, matches = processor(rules=(rule,), default_rules=False, events_per_minute=5)
    events = run(proc, "boom\n" * 1000)
    assert len(events) == 5 and matches[("boom", "/var/log/app.log")] == 1000
    assert proc.limiter.summaries(NOW + 30) == []  # the minute is not over
    (summary,) = proc.limiter.summaries(NOW + 61)
    assert summary.fields["suppressed"] == 995 and summary.fields["rule"] == "boom"
    assert len(run(proc, "boom\n", now=NOW + 62)) == 1  # a new minute, new allowance


def test_json_logs_match_on_fields_and_message():
    rules = (
        RuleConfig(name="errors", match={"level": "(?i)error|fatal"}),
        RuleConfig(name="slow", pattern=r"took (?P<ms>\d+)ms", match={"svc": "api"}),
    )
    proc, _ = processor(rules=rules, format="json", default_rules=False)
    lines = [
        {"level": "ERROR", "message": "payment failed", "request_id": "r1"},
        {"level": "info", "message": "took 950ms", "svc": "api"},
        {"level": "info", "message": "took 10ms", "svc": "web"},
        "not json at all",
    ]
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    events = run(proc, text)
    assert [e.fields["rule"] for e in events] == ["errors", "slow"]
    assert events[0].fields["fields"] == {"level": "ERROR"}
    assert events[1].fields["fields"] == {"ms": "950", "svc": "api"}


def test_default_rules_give_way_to_a_rule_of_the_same_name():
    own = RuleConfig(name="apache_error", pattern="never matches this", severity="low")
    proc, _ = processor(rules=(own,))
    assert not run(proc, "[Mon Dec 05 19:15:57 2005] [error] mod_jk child in error state 6\n")
    proc, _ = processor()
    assert run(proc, "[Mon Dec 05 19:15:57 2005] [error] mod_jk child in error state 6\n")


def test_new_error_signatures_and_failed_logins_come_out_as_events():
    proc, _ = processor(detectors=("auth", "new_errors"), default_rules=False)
    text = "".join(
        f"Jun 14 15:16:{i:02d} combo sshd(pam_unix)[{100 + i}]: authentication failure; "
        f"logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=203.0.113.9  user=root\n"
        for i in range(12)
    )
    events = run(proc, text + "2026-11-26 ERROR worker 17 crashed at 0xdeadbeef\n")
    kinds = sorted((e.type, e.fields["detector"]) for e in events)
    assert kinds == [("log", "new_error"), ("security", "auth")]
    assert proc.detectors["auth"].by_remote == {"203.0.113.9": 12}
    assert not run(proc, "2026-11-27 ERROR worker 3 crashed at 0xfeedface\n")  # same signature


@pytest.mark.skipif("hyperscan" not in available_engines(), reason="hyperscan not installed")
@pytest.mark.parametrize("sample", ["Linux_2k.log", "Apache_2k.log", "Zookeeper_2k.log"])
def test_hyperscan_and_re_give_the_same_events_and_counts(sample):
    text = (LOGHUB / sample).read_text(errors="replace") + "\n"
    results = []
    for engine in ("hyperscan", "re"):
        proc, matches = processor(engine, detectors=("auth", "new_errors"), context_lines=1)
        assert proc.engine == engine
        events = run(proc, text)
        results.append(([e.to_dict() for e in events], matches, proc.detectors["auth"].by_remote))
    assert results[0] == results[1]
    assert results[0][0]  # not vacuous: every sample has matches


NGINX_ERROR = (
    "2026/11/26 10:00:01 [error] 1234#1234: *5 upstream timed out (110: Connection timed out)"
    " while reading response header from upstream, client: 203.0.113.7\n"
)


def test_a_line_several_rules_match_is_one_event_listing_them_all():
    """The issue's nginx line: the user's rule, apache_error, timeout and a new
    signature were four events; now one, and every rule still counts it."""
    own = RuleConfig(name="upstream", pattern=r"upstream timed out", severity="high")
    proc, matches = processor(rules=(own,), detectors=("new_errors",))
    (event,) = run(proc, NGINX_ERROR)
    assert event.severity == "high"  # the most severe of them
    assert event.fields["rule"] == "upstream"
    assert event.fields["rules"] == ["upstream", "apache_error", "timeout"]
    assert event.fields["new_signature"] is True and "<ip>" in event.fields["template"]
    assert matches == {
        (name, "/var/log/app.log"): 1 for name in ("upstream", "apache_error", "timeout")
    }
    (again,) = run(proc, NGINX_ERROR.replace("*5", "*6"))  # same signature: not new
    assert again.fields["new_signature"] is False and "template" not in again.fields


def test_the_most_severe_rule_names_the_event_and_fields_come_from_every_rule():
    rules = (
        RuleConfig(name="low_one", pattern=r"id=(?P<id>\d+)", severity="low"),
        RuleConfig(name="bad", pattern=r"(?P<what>disk) failed", severity="critical"),
    )
    proc, _ = processor(rules=rules, default_rules=False)
    (event,) = run(proc, "id=7 disk failed\n")
    assert (event.fields["rule"], event.severity) == ("bad", "critical")
    assert event.fields["rules"] == ["low_one", "bad"]
    assert event.fields["fields"] == {"id": "7", "what": "disk"}


def test_an_event_is_sent_while_any_of_its_rules_has_budget():
    rules = (RuleConfig(name="a", pattern="a"), RuleConfig(name="b", pattern="b"))
    proc, matches = processor(rules=rules, default_rules=False, events_per_minute=2)
    events = run(proc, "a\na\nab\nab\nb\n")
    # a, a use up a's budget; both "ab" go out on b's; the last "b" finds none
    assert [e.fields["rules"] for e in events] == [["a"], ["a"], ["a", "b"], ["a", "b"]]
    assert matches == {("a", "/var/log/app.log"): 4, ("b", "/var/log/app.log"): 3}
    summaries = {s.fields["rule"]: s.fields["suppressed"] for s in proc.limiter.summaries(NOW + 61)}
    assert summaries == {"b": 1}  # a line sent in an event listing a rule is not suppressed


def test_a_new_signature_is_its_own_event_when_the_line_is_rate_limited_or_no_rule_matched():
    proc, _ = processor(
        rules=(RuleConfig(name="boom", pattern="boom"),),
        default_rules=False,
        detectors=("new_errors",),
        events_per_minute=1,
    )
    first, second = run(proc, "ERROR boom 1\nERROR boom at /x\n")
    assert first.fields["rules"] == ["boom"] and first.fields["new_signature"] is True
    assert second.fields["detector"] == "new_error" and second.fields["rule"] == "boom"
    (alone,) = run(proc, "ERROR nothing a rule knows\n")
    assert alone.fields["detector"] == "new_error" and alone.fields["rule"] is None


def test_a_line_that_makes_processing_raise_is_skipped_and_counted_not_the_rest(monkeypatch):
    proc, matches = processor(
        rules=(RuleConfig(name="boom", pattern="boom (?P<n>[0-9]+)"),), default_rules=False
    )
    real = Rule.extract

    def extract(self, line):
        if line == "boom 2":
            raise RuntimeError("a bug in one line's processing")
        return real(self, line)

    monkeypatch.setattr(Rule, "extract", extract)
    events = run(proc, "boom 1\nboom 2\nboom 3\n")
    assert [e.fields["fields"]["n"] for e in events] == ["1", "3"]
    assert matches == {("boom", "/var/log/app.log"): 2} and proc.line_errors == 1
