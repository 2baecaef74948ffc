r"""The fast paths of collectors/logs/rules.py held to straightforward
references: the buffer scan against searching each line with each pattern,
and the JSON prefilter against parsing every line. Same matches, counters,
events and detector state, on the Loghub samples and on generated and
hostile input."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.records import Event
from collectors.logs.config import LogsConfig, RuleConfig
from collectors.logs.detectors.base import build_all
from collectors.logs.detectors.signatures import template
from collectors.logs.files import Chunk
from collectors.logs.matcher import available_engines
from collectors.logs.rules import RateLimiter, TableProcessor

LOGHUB = Path(__file__).parents[2] / "fixtures" / "loghub"
SAMPLES = ["Linux_2k.log", "Apache_2k.log", "Zookeeper_2k.log", "HDFS_2k.log"]
NOW = 1_800_000_000.0
ENGINES = available_engines()
USER_RULES = (
    RuleConfig(name="errors", pattern="ERROR|FATAL", severity="high"),
    RuleConfig(name="refused", pattern=r"(?P<what>[Cc]onnection) refused", severity="low"),
    RuleConfig(name="digits_at_end", pattern=r"\d$", severity="info"),  # no literal: `re`
    RuleConfig(name="negative_block", pattern=r"blk_-\d+ terminating", severity="info"),
)


class NaiveMatcher:
    """Each line searched by each pattern, one by one: the definition."""

    engine = "naive"

    def __init__(self, patterns: list[str]) -> None:
        self.regexes = [re.compile(p.encode()) for p in patterns]

    def scan(self, chunk: bytes) -> list[tuple[int, int, frozenset[int]]]:
        out, start = [], 0
        for line in chunk.split(b"\n")[:-1]:
            ids = frozenset(i for i, r in enumerate(self.regexes) if r.search(line))
            if ids:
                out.append((start, start + len(line), ids))
            start += len(line) + 1
        return out


def processor(engine: str = "auto", **options: Any) -> TableProcessor:
    options.setdefault("paths", ("/var/log/app.log",))
    config = LogsConfig(**options)
    detectors = build_all()
    return TableProcessor(config, detectors, {}, RateLimiter(config.events_per_minute), engine)


def outcome(proc: TableProcessor, chunks: list[bytes]) -> tuple[Any, ...]:
    events: list[Event] = []
    for data in chunks:
        proc.process(Chunk("/var/log/app.log", data, data.count(b"\n")), NOW, events.append)
    events += proc.limiter.summaries(NOW + 120)
    return (
        [e.to_dict() for e in events],
        dict(proc.matches),
        dict(proc.detectors["auth"].by_remote),
        dict(proc.detectors["auth"].by_user),
        proc.detectors["new_errors"].snapshot(),
        proc.detectors["volume"].snapshot(),
    )


def sample(name: str) -> bytes:
    return (LOGHUB / name).read_bytes().rstrip(b"\n") + b"\n"


# -- text: the buffer scan against each line searched on its own -------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", SAMPLES)
def test_the_scan_gives_what_searching_every_line_gives_on_the_samples(engine, name):
    data = sample(name)
    got = outcome(processor(engine, rules=USER_RULES, context_lines=2), [data])
    naive = processor(engine, rules=USER_RULES, context_lines=2)
    naive.matcher = NaiveMatcher([naive.matcher.patterns[i] for i in range(len(naive.scanned))])
    assert got == outcome(naive, [data])
    assert got[1]  # not vacuous


@pytest.mark.parametrize("name", SAMPLES)
def test_one_event_per_line_listing_every_rule_that_matches_it(name):
    """Independent of the processor's code: each line searched with each
    rule's `re`, with no rate limit, against the events and counters."""
    data = sample(name)
    proc = processor(rules=USER_RULES, events_per_minute=1_000_000, detectors=())
    events, matches, *_ = outcome(proc, [data])
    severity = {r.name: r.severity for r in proc.rules}
    rank = ["critical", "high", "medium", "low", "info"]
    expected_events, expected_counts = [], Counter[str]()
    for line in data.decode("utf-8", "replace").split("\n")[:-1]:
        names = [r.name for r in proc.rules if r.regex is not None and r.regex.search(line)]
        expected_counts.update(names)
        if names:
            worst = min(names, key=lambda n: rank.index(severity[n]))
            expected_events.append((line.removesuffix("\r"), worst, names, severity[worst]))
    assert [
        (e["fields"]["line"], e["fields"]["rule"], e["fields"]["rules"], e["severity"])
        for e in events
    ] == expected_events
    assert matches == {(n, "/var/log/app.log"): c for n, c in expected_counts.items()}


@pytest.mark.parametrize("name", ["Linux_2k.log", "Apache_2k.log"])
def test_new_signatures_are_those_of_the_error_lines_in_order(name):
    """Every error line (a rule or an error level) is fed to the signature
    detector once; a template seen for the first time is flagged once."""
    data = sample(name)
    proc = processor(events_per_minute=1_000_000, detectors=("new_errors",))
    events, *_ = outcome(proc, [data])
    flagged = [template(e["fields"]["line"]) for e in events if e["fields"].get("new_signature")]
    flagged += [e["fields"]["template"] for e in events if e["fields"].get("detector")]
    assert len(flagged) == len(set(flagged)) == len(proc.detectors["new_errors"])


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_how_the_sample_is_cut_into_chunks_changes_nothing(data):
    text = sample("Linux_2k.log") + sample("Apache_2k.log")
    cuts = sorted(
        data.draw(st.sets(st.integers(1, text.count(b"\n") - 1), max_size=8), label="cuts")
    )
    ends = [i + 1 for i, b in enumerate(text) if b == 10]
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(text[last : ends[cut - 1]])
        last = ends[cut - 1]
    pieces.append(text[last:])
    options = {"rules": USER_RULES, "context_lines": 2, "detectors": ("auth", "new_errors")}
    whole = outcome(processor(**options), [text])
    cut = outcome(processor(**options), pieces)
    assert whole[:5] == cut[:5]  # the volume detector sees lines per chunk, same total


# -- JSON: the literal prefilter against parsing every line ------------------------------

JSON_RULES = (
    RuleConfig(name="coded", match={"code": ".+"}, severity="high"),
    RuleConfig(name="db", pattern=r"database (?P<what>\w+) failed", severity="critical"),
    RuleConfig(name="kill", pattern=r"(?i)kill", severity="medium"),
    RuleConfig(name="slow", pattern=r"took \d+ms", match={"svc": "api"}, severity="low"),
    # str and bytes read the class differently: no byte literal spells "café"
    RuleConfig(name="accent", pattern="caf[\u00e9\u00e8] au lait", severity="info"),
    # a `/` may be written `\/`: with such a literal, any backslash means parse
    RuleConfig(name="api", pattern="path=/api/v1", severity="info"),
    RuleConfig(name="slashed", match={"a/b": ".+"}, severity="info"),
    RuleConfig(name="xyz", pattern="x/y/z", severity="info"),  # no piece of 3 bytes
)
WORDS = [
    "ERROR",
    "error",
    "Err",
    "info",
    "database x failed",
    "database disk failed",
    "\u212aill",  # the Kelvin sign: (?i)kill matches it
    "KILL",
    "took 12ms",
    "Failed password for root from 203.0.113.9 port 22 ssh2",
    "authentication failure; rhost=203.0.113.9 user=root",
    "caf\u00e9",
    "caf\u00e9 au lait",
    "\u00ff\u0130",
    "",
]
KEYS = ["message", "msg", "level", "code", "svc", "other", "mess\u0061ge", "c\u00f6de"]
scalars = st.one_of(
    st.sampled_from(WORDS),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)


def escaped(text: str) -> str:
    """Every character as a \\u escape: JSON for the same text, no literal left."""
    return "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in text)


@st.composite
def json_line(draw: st.DrawFn) -> str:
    obj = draw(objects)
    style = draw(st.sampled_from(["plain", "ascii", "spaced", "escaped_keys", "text", "raw"]))
    if style == "plain":
        return json.dumps(obj, ensure_ascii=False)
    if style == "ascii":
        return json.dumps(obj)
    if style == "spaced":
        return json.dumps(obj, ensure_ascii=False, indent=None, separators=(" , ", " : "))
    if style == "escaped_keys":
        return "{" + ",".join(f'"{escaped(k)}":{json.dumps(v)}' for k, v in obj.items()) + "}"
    if style == "text":
        return draw(st.sampled_from(WORDS))
    return draw(st.text(st.characters(blacklist_characters="\n"), max_size=30))


HOSTILE = [
    '{"message":"failed x","code":99999999999999999999999}',
    '{"\\u0063ode":"1","message":"hidden key"}',
    '{"message":"\\u0045RROR hidden in an escape","level":"\\u0065rror"}',
    '{"level":"\\u0045RROR"}',
    '{"message":"database \\u0078 failed"}',
    '{"message":{"text":"database x failed"}}',
    '{"message":1E2,"code":null}',
    '{"message":NaN,"level":"fatal"}',
    '{"message":"x","message":["\\u212aill"]}',
    '{"msg":"\u212aill it"}',
    '{"message":"\u212aILL"}',
    '{"message":"caf\u00e9 ERROR"}',
    '{"message":"caf\u00e9 au lait"}',
    '{"message":"GET path=\\/api\\/v1"}',
    '{"a\\/b":"x"}',
    '{"message":"x\\/y\\/z"}',
    '{"message":"a \\"quoted\\" ERROR\\nsecond line\\t"}',
    "[" * 5000 + "]" * 5000,
    '{"a":' * 5000 + "1" + "}" * 5000,
    '{"message":"' + "\u00e9" * 100 + '"}',
    '{"level":"CRIT","message":"disk on fire"}',
    '{"level":"ERR","message":"Failed password for root from 203.0.113.9 port 22 ssh2"}',
    "not json ERROR at all",
    '{"message": "spaced" , "code" : 1}',
    '{"svc":"api","message":"took 5ms"}',
    '"just a string ERROR"',
    "\xff\xfe invalid utf-8 ERROR",
]


def both_ways(lines: list[str], **options: Any) -> tuple[Any, Any]:
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")
    options.setdefault("rules", JSON_RULES)
    options.setdefault("events_per_minute", 1_000_000)
    fast = processor(format="json", **options)
    full = processor(format="json", **options)
    full.json_prefilter = False
    return outcome(fast, [data]), outcome(full, [data])


def test_the_json_prefilter_keeps_every_hostile_line_a_full_parse_would_match():
    fast, full = both_ways(HOSTILE)
    assert fast == full
    rules = Counter(r for e in full[0] for r in e["fields"].get("rules", ()))
    assert rules["coded"] >= 3 and rules["db"] >= 2 and rules["kill"] >= 2  # not vacuous
    assert rules["accent"] == rules["api"] == rules["slashed"] == rules["xyz"] == 1
    fast, full = both_ways(HOSTILE, rules=())  # detectors only: only \u escapes mean parse
    assert fast == full
    fast, full = both_ways(HOSTILE, rules=(JSON_RULES[2],))  # (?i)kill: the Kelvin sign
    assert fast == full
    assert sum(e["fields"].get("rules") == ["kill"] for e in full[0]) == 2


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(json_line(), min_size=1, max_size=12))
def test_the_json_prefilter_changes_nothing_on_generated_lines(lines):
    fast, full = both_ways(lines)
    assert fast == full


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(json_line(), min_size=1, max_size=12))
def test_the_json_prefilter_with_only_detectors_and_another_message_key(lines):
    fast, full = both_ways(lines, rules=(), json_message_key="msg")
    assert fast == full


def test_the_json_prefilter_skips_lines_that_cannot_match():
    proc = processor(format="json", rules=JSON_RULES[:4])  # no key or literal holds a "/"
    data = (
        b'{"level":"info","message":"request served","ms":3}\n'
        b'{"level":"info","message":"database x failed"}\n'  # a rule's literal
        b'{"level":"info","message":"a \\"quoted\\" word"}\n'  # no literal holds a quote
        b'{"level":"warn","message":42}\n'  # matched as re-encoded text
        b'{"level":"info","message":"caf\\u00e9"}\n'  # \\u can spell anything
        b'{"level":"info","message":"disk I\\/O error"}\n'  # "I/O error": "O error" is looked for
    )
    assert proc.json_lines is not None and proc.json_lines.enabled
    wanted = [data.split(b"\n")[i] for i in (1, 3, 4, 5)]
    assert [data[s:e] for s, e in proc.json_lines.lines(data)] == wanted


def test_a_pattern_without_a_literal_turns_the_json_prefilter_off():
    proc = processor(format="json", rules=(RuleConfig(name="x", pattern=r"\d$"),))
    assert proc.json_lines is not None and not proc.json_lines.enabled
    proc = processor(format="json", rules=JSON_RULES, encoding="latin-1")
    assert proc.json_lines is not None and not proc.json_lines.enabled
