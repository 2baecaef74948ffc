"""Compound alert expressions (agent/alerts/query.py): parsing, PromQL's
matching semantics checked against a real Prometheus (promtool), and the
engine on recorded series: the 5xx share, the cascade rule, errors."""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerts.engine import AlertEngine, build_rule
from agent.alerts.expr import ExprError, evaluator
from agent.alerts.query import (
    Agg,
    Bin,
    CompoundExpr,
    Leaf,
    QueryError,
    evaluate,
    parse,
    parse_query,
    parse_tree,
)
from agent.core.records import Metric
from tests.agent.alerts.test_engine import Harness as EngineHarness

T0 = 1_800_000_000.0
RATIO = 'rate(http_requests_total{status_class="5xx"}[5m]) / rate(http_requests_total[5m]) > 0.05'
CASCADE = f"({RATIO.removesuffix(' > 0.05')} > 0.05) and on() (min_over_time(check_up[5m]) == 0)"

# --- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown", "op", "threshold"),
    [
        ("a > 5 and b < 3", "a > 5 and b < 3", "", None),
        ("sum by (vhost) (rate(x[5m])) > 2", "sum by (vhost) (rate(x[5m]))", ">", 2.0),
        ("count(x) by (a) >= 2", "count by (a) (x)", ">=", 2.0),
        ("sum without(a, b) (x) == 0", "sum without (a, b) (x)", "==", 0.0),
        ("0.05 < a / on(job) b", "a / on(job) b", ">", 0.05),
        ("a unless ignoring(y) b", "a unless ignoring(y) b", "", None),
        ("a + b * c > 1", "a + b * c", ">", 1.0),
        ("(a + b) * c > 1", "(a + b) * c", ">", 1.0),
        ("a - b - c > 0", "a - b - c", ">", 0.0),
        ("a - (b - c) > 0", "a - (b - c)", ">", 0.0),
        ("a or b and c", "a or b and c", "", None),
        ("(a or b) and c", "(a or b) and c", "", None),
        ("a > bool 1 == 1", "a > bool 1", "==", 1.0),
        ("a > b", "a > b", "", None),
        ("absent(x{job='a'}) and on() y", 'absent(x{job="a"}) and on() y', "", None),
        (
            "predict_linear(d[1h], 86400) < 0 and on(mount) d < 1e9",
            "predict_linear(d[1h], 86400) < 0 and on(mount) d < 1000000000",
            "",
            None,
        ),
        (
            RATIO,
            'sum without (status_class) (rate(http_requests_total{status_class="5xx"}[5m]))'
            " / sum without (status_class) (rate(http_requests_total[5m]))",
            ">",
            0.05,
        ),
    ],
)
def test_compound_shapes_and_how_they_are_read(text, shown, op, threshold):
    e = parse(text)
    assert isinstance(e, CompoundExpr) and e.func == "query" and e.text == text
    assert e.query.op == e.op == op
    assert (threshold is None and math.isnan(e.threshold)) or e.threshold == threshold
    from agent.alerts.query import show

    assert show(e.query.node) == shown
    # what is shown reads back to the same tree: it is the PromQL the rule means
    assert show(parse_tree(show(e.query.node))[0]) == show(e.query.node)


def test_one_selector_rules_keep_their_fast_shape():
    e = parse('avg_over_time(cpu{cpu="all"}[5m]) > 80')
    assert not isinstance(e, CompoundExpr) and e.func == "avg_over_time"
    assert e.leaves() == (e,)


def test_the_subset_ratio_sums_away_only_the_labels_restricted_differently():
    node = parse_query('x{a="1", b="2"} / x{b="2"} > 0').node
    assert node == Bin(
        "/",
        Agg("sum", "without", ("a",), node.lhs.arg),
        Agg("sum", "without", ("a",), node.rhs.arg),
    )
    # 5xx over 4xx: both pinned, to different values: the ratio of the two
    node = parse_query('x{s="5xx"} / x{s="4xx"} > 1').node
    assert isinstance(node.lhs, Agg) and node.lhs.labels == ("s",)
    # not the same metric, or not the same function, or a modifier: PromQL as written
    for text in (
        'x{s="5xx"} / y > 1',
        'rate(x{s="5xx"}[5m]) / rate(x[10m]) > 1',
        'x{s="5xx"} / on(job) x > 1',
        'x{s="5xx"} / x{s="5xx"} > 1',
        'x{s=~"5.."} / x{s=~"5.."} > 1',
    ):
        node = parse_query(text).node
        assert isinstance(node, Bin) and isinstance(node.lhs, Leaf), text


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("a / b", 6, "expected a comparison (>, >=, <, <=, ==, !=) or and/or/unless"),
        ("a and 1", 3, '"and" needs a series expression on both sides'),
        ("a > 1 and 2", 7, '"and" needs a series expression on both sides'),
        ("1 > 2", 3, "comparing two numbers needs bool"),
        ("1 + 2 > bool 3", 1, "only numbers"),
        ("a > bool 1", 1, "bool at the top gives every series 0 or 1"),
        ("sum(1) > 2", 5, "sum() aggregates series; found a number"),
        ("a * group_left b > 1", 5, "group_left is not supported"),
        ("a * on(x) group_right b > 1", 11, "group_right is not supported"),
        ("sum by (a (x) > 1", 11, 'expected ")" or "," in by(...)'),
        ("a + on(x) 1 > 2", 3, "on(...) matches two series expressions"),
        ("(a > 1", 7, 'expected ")" to close the parenthesis'),
        ("a > 1 and", 10, "expected a metric, a function, a number or ("),
        ("a > 1 and by > 1", 11, '"by" is a keyword'),
        ("sum(x[5m]) > 1", 6, "a range needs a function around it"),
        ("a > 1 and rate(b) > 1", 17, "rate() needs a range"),
        ("a > 1 and b > nan", 15, "NaN and Inf are not allowed"),
        ("a > 1 or b{c=~'('} > 1", 15, "invalid regular expression"),
    ],
)
def test_compound_errors_name_what_was_expected_and_where(text, column, message):
    with pytest.raises(ExprError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.column == column, info.value.pretty()


def test_deep_and_long_expressions_are_refused_not_a_recursion_error():
    with pytest.raises(ExprError, match="more than 32 levels"):
        parse("(" * 5000 + "a" + ")" * 5000 + " > 1")
    with pytest.raises(ExprError, match="more than 32 levels"):
        parse("sum(" * 5000 + "a" + ")" * 5000 + " > 1")
    with pytest.raises(ExprError, match="more than 64 operators"):
        parse(" + ".join(["a"] * 5000) + " > 1")
    deep = "(" * 30 + "a" + ")" * 30 + " > 1"
    assert parse(deep).query.op == ">"


TOKENS = [*"ab(){}[]=!~<>+-*/%,.\"'0123456789 \t5mé", "sum", "by", "on", "and", "or"]
TOKENS += ["unless", "bool", "rate(", "absent(", "ignoring(", "Inf", "x{a=", "[5m]"]


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
@settings(max_examples=400, deadline=None)
def test_any_text_parses_or_is_an_expr_error(text):
    try:
        e = parse(text)
    except ExprError:
        return
    assert e.leaves()


def test_clear_works_on_a_compound_comparison_and_is_refused_without_one():
    r = build_rule("R", RATIO, 0.0, "< 0.04", "high", {}, "", 0.0, ())
    assert r.clear == ("<", 0.04)
    with pytest.raises(ExprError, match="clear needs an expr compared with"):
        build_rule("R", "a > 1 and b > 1", 0.0, "< 1", "high", {}, "", 0.0, ())


# --- semantics, against a real Prometheus ----------------------------------------------

SERIES = {
    ("req", (("code", "2xx"), ("job", "api"))): [3, 9, 14, 20, 31, 40],
    ("req", (("code", "5xx"), ("job", "api"))): [0, 1, 1, 2, 6, 8],
    ("req", (("code", "2xx"), ("job", "web"))): [5, 5, 7, 9, 12, 16],
    ("req", (("code", "5xx"), ("job", "web"))): [1, 1, 1, 1, 1, 2],
    ("up", (("job", "api"),)): [1, 1, 1, 1, 0, 0],
    ("up", (("job", "web"),)): [1, 1, 1, 1, 1, 1],
    ("up", (("job", "db"),)): [1, 0, 1, 1, 1, 3],
    ("lat", (("job", "api"), ("q", "0.5"))): [2, 2, 3, 3, 4, 4],
    ("lat", (("job", "api"), ("q", "0.9"))): [5, 6, 7, 8, 9, 10],
}
STEP = 60.0
EXPRESSIONS = [
    "req > 5",
    "5 < req",
    "req > bool 5",
    "req == req",
    "req + 1",
    "2 * req - 1",
    "req % 3",
    "req / 4",
    "req + on(job) group_left up",  # refused: see below
    "sum by (job) (req) * on(job) up",
    "up * on(job) sum by (job) (req)",
    'req{code="5xx"} * ignoring(code) up',
    "sum by (job) (req)",
    "sum without (code) (req)",
    "sum(req)",
    "count(req > 3)",
    "count by (job) (req > 3)",
    "avg by (code) (req)",
    "max(req)",
    "min by (job) (req)",
    "max by (q) (lat) > 3",
    "req and on(job) up == 1",
    "req unless on(job) (up == 0)",
    "up or on(job) req",
    "up == 0 or on(job) sum by (job) (req) > 20",
    "req or sum by (job) (req)",
    'req{code="5xx"} / req',
    'req{code="5xx", job="api"} / req',
    'sum by (job) (req{code="5xx"}) / sum by (job) (req) > 0.1',
    "req{code='5xx'} / on(job) group_left sum by (job) (req)",  # refused
    "(req > 2) and on(job) (lat > 8)",
    "sum by (job) (req) / on(job) up",
    "up > 0 unless up > 1",
    "(sum(req) > 10) and on() (min(up) == 0)",
]


def _vector_source(now: float):
    def source(leaf):
        out = {}
        for (name, key), values in SERIES.items():
            labels = dict(key)
            if not leaf.selector.matches(name, labels):
                continue
            ts = array("d", [i * STEP for i in range(len(values))])
            value = evaluator(leaf)(ts, array("d", map(float, values)), now)
            if value is not None:
                out[key] = value
        return out

    return source


def _yaml_float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


def _labels(key) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in key) + "}"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) missing"
)
def test_matching_and_aggregation_equal_prometheus_on_the_same_series(tmp_path):
    """Each expression, evaluated by vigil, is written as promtool's expected
    answer for the PromQL vigil says it means (`show`): promtool fails on any
    series, label or value that differs. `+ 0` drops __name__ on the Prometheus
    side, which vigil never carries."""
    from agent.alerts.query import show

    now = (len(next(iter(SERIES.values()))) - 1) * STEP
    lines = ["tests:", "  - interval: 1m", "    input_series:"]
    for (name, key), values in SERIES.items():
        lines.append(f"      - series: '{name}{_labels(key)}'")
        lines.append(f"        values: '{' '.join(map(str, values))}'")
    lines.append("    promql_expr_test:")
    compared = 0
    for text in EXPRESSIONS:
        try:
            node, _ = parse_tree(text)
        except ExprError as exc:
            assert "group_left" in exc.message
            continue
        result = evaluate(node, _vector_source(now))
        assert isinstance(result, dict)
        lines.append(f"      - expr: '({show(node)}) + 0'")
        lines.append(f"        eval_time: {int(now)}s")
        lines.append("        exp_samples:" + ("" if result else " []"))
        for key, value in sorted(result.items()):
            lines.append(f"          - labels: '{_labels(key)}'")
            lines.append(f"            value: {_yaml_float(value)}")
        compared += 1
    assert compared == len(EXPRESSIONS) - 2
    spec = tmp_path / "parity.yml"
    spec.write_text("\n".join(lines) + "\n")
    run = subprocess.run(
        ["promtool", "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_duplicates_on_a_side_of_a_match_are_an_error_as_in_prometheus():
    node, _ = parse_tree("req / on(job) req")
    with pytest.raises(QueryError, match="several series on the right of '/'"):
        evaluate(node, _vector_source(5 * STEP))


def test_division_by_zero_and_overflow_follow_ieee():
    vectors = {"a": {(("k", "1"),): 1.0, (("k", "2"),): -1.0, (("k", "3"),): 0.0}}

    def source(leaf):
        return vectors.get(leaf.selector.metric, {})

    out = evaluate(parse_tree("a / 0")[0], source)
    assert out[(("k", "1"),)] == math.inf and out[(("k", "2"),)] == -math.inf
    assert math.isnan(out[(("k", "3"),)])
    vectors["a"] = {(("k", "1"),): 1e308}
    assert evaluate(parse_tree("a * 10")[0], source) == {(("k", "1"),): math.inf}
    assert math.isnan(evaluate(parse_tree("a % 0")[0], source)[(("k", "1"),)])
    vectors["a"] = {(("k", "1"),): math.inf, (("k", "2"),): -math.inf}
    assert math.isnan(evaluate(parse_tree("sum(a)")[0], source)[()])
    assert evaluate(parse_tree("max(a)")[0], source)[()] == math.inf


# --- the engine on recorded series -------------------------------------------------


class Harness(EngineHarness):
    def feed(self, t, records):  # type: ignore[override]  # whole batches here
        """A batch, then the tick: compound rules are evaluated at the tick."""
        self.engine.observe(records, T0 + t)
        self.engine.tick(T0 + t)


def rule(expr, for_=0.0, clear="", name="R"):
    return build_rule(name, expr, for_, clear, "high", {}, "", 0.0, (), 0.5)


class AccessLog:
    """The counters the access-log collector emits, every 10 s, for two
    files: `share` of the requests of each file answered 5xx."""

    def __init__(self, seed=7):
        self.rng = random.Random(seed)
        self.totals: dict[tuple[str, str], float] = {}

    def records(self, t, rates):
        out = []
        for file, (per_second, share) in rates.items():
            n = per_second * 10
            fives = sum(self.rng.random() < share for _ in range(n))
            for status, count in (("2xx", n - fives), ("5xx", fives), ("4xx", 0)):
                key = (file, status)
                self.totals[key] = self.totals.get(key, 0.0) + count
                labels = {"file": file, "status_class": status, "vhost": "example.org"}
                out.append(
                    Metric("http_requests_total", self.totals[key], T0 + t, labels, "counter")
                )
        return out


def test_the_5xx_share_fires_per_file_and_resolves_with_its_clear():
    h = Harness(rule(RATIO, for_=120.0, clear="< 0.04"))
    log = AccessLog()
    rates = {"/a.log": (20, 0.01), "/b.log": (20, 0.01)}
    for t in range(0, 600, 10):
        h.feed(t, log.records(t, rates))
    assert h.sent == [] and h.engine.instances == {}
    rates["/b.log"] = (20, 0.12)  # 12 % of b's requests fail
    t = 600
    while not h.sent and t < 1200:
        h.feed(t, log.records(t, rates))
        t += 10
    assert [a.state for a in h.sent] == ["firing"]
    alert = h.sent[0]
    assert alert.labels["file"] == "/b.log" and alert.labels["vhost"] == "example.org"
    assert "status_class" not in alert.labels  # summed away: the share is per file and vhost
    assert 0.05 < alert.value < 0.12
    # the value is the share over the window, from the counters themselves
    explained = {
        row["labels"]["file"]: row["value"]
        for row in h.engine.explain(h.engine.rules[0], T0 + t - 10)
    }
    assert set(explained) == {"/a.log", "/b.log"} and explained["/a.log"] < 0.04
    rates["/b.log"] = (20, 0.045)  # under the threshold, over the clear: still firing
    start = t
    for t in range(start, start + 600, 10):
        h.feed(t, log.records(t, rates))
    assert [a.state for a in h.sent] == ["firing"]
    rates["/b.log"] = (20, 0.0)
    for t in range(start + 600, start + 1200, 10):
        h.feed(t, log.records(t, rates))
    assert [a.state for a in h.sent] == ["firing", "resolved"]


def test_no_traffic_at_all_is_no_value_and_resolves():
    h = Harness(rule(RATIO, clear="< 0.04"))
    log = AccessLog()
    for t in range(0, 400, 10):
        h.feed(t, log.records(t, {"/a.log": (5, 0.5)}))
    assert [a.state for a in h.sent] == ["firing"]
    for t in range(400, 1000, 10):  # the counters stand still: 0 / 0
        h.feed(t, log.records(t, {"/a.log": (0, 0.0)}))
    h.engine.tick(T0 + 1000)
    assert [a.state for a in h.sent] == ["firing", "resolved"]


def test_the_cascade_rule_fires_only_with_both_and_within_five_minutes():
    """The playbook's cascade: the 5xx share high and a check down on this
    host within 5 minutes; `on()` matches any check against any file."""
    h = Harness(rule(CASCADE))
    log = AccessLog()
    ok = {"/a.log": (10, 0.0)}
    bad = {"/a.log": (10, 0.3)}

    def check(t, up, name="web"):
        return [Metric("check_up", up, T0 + t, {"check": name, "type": "http"})]

    t = 0
    for t in range(0, 600, 10):  # healthy
        h.feed(t, log.records(t, ok) + check(t, 1) + check(t, 1, "db"))
    for t in range(600, 900, 10):  # the check fails, errors stay low
        h.feed(t, log.records(t, ok) + check(t, 0) + check(t, 1, "db"))
    assert h.sent == []
    for t in range(900, 1500, 10):  # the check recovers, errors stay low
        h.feed(t, log.records(t, ok) + check(t, 1) + check(t, 1, "db"))
    assert h.sent == []
    for t in range(1500, 2000, 10):  # errors, with every check passing for 5 min
        h.feed(t, log.records(t, bad) + check(t, 1) + check(t, 1, "db"))
    assert h.sent == []
    for t in range(2000, 2100, 10):  # and now a check fails too
        h.feed(t, log.records(t, bad) + check(t, 1) + check(t, 0 if t >= 2050 else 1, "db"))
    assert [a.state for a in h.sent] == ["firing"]
    assert h.sent[0].labels["file"] == "/a.log" and "check" not in h.sent[0].labels
    fired = h.sent[0].starts_at
    assert fired == T0 + 2050
    for t in range(2100, 2300, 10):  # the check is back: still within 5 min of the failure
        h.feed(t, log.records(t, bad) + check(t, 1) + check(t, 1, "db"))
    assert [a.state for a in h.sent] == ["firing"]
    for t in range(2300, 2400, 10):  # the failure has left the window
        h.feed(t, log.records(t, bad) + check(t, 1) + check(t, 1, "db"))
    assert [a.state for a in h.sent] == ["firing", "resolved"]
    # the last 0 was at 2090: the first evaluation without it in (now - 5m, now]
    assert h.sent[1].ends_at == T0 + 2090 + 300


def test_count_by_and_sum_by_over_the_hosts_own_series():
    h = Harness(
        rule("count(check_up == 0) >= 2", name="TwoChecksDown"),
        rule("sum by (group) (process_cpu_seconds_rate) > 1.5", name="GroupBusy"),
    )
    for t in range(0, 50, 10):
        batch = [
            Metric("check_up", 0 if (t >= 20 and name != "c") else 1, T0 + t, {"check": name})
            for name in ("a", "b", "c")
        ]
        batch += [
            Metric(
                "process_cpu_seconds_rate",
                0.9 if t >= 30 else 0.5,
                T0 + t,
                {"group": "app", "pid": p},
            )
            for p in ("1", "2")
        ]
        h.feed(t, batch)
    fired = [(a.rule, a.value, dict(a.labels)) for a in h.sent]
    assert fired[0][:2] == ("TwoChecksDown", 2.0)
    assert fired[1][:2] == ("GroupBusy", 1.8) and fired[1][2]["group"] == "app"
    assert "pid" not in fired[1][2]


def test_an_evaluation_error_keeps_the_state_is_counted_and_clears():
    h = Harness(rule("a / on(job) b > 1"))
    h.feed(0, [Metric("a", 5, T0, {"job": "x"}), Metric("b", 1, T0, {"job": "x", "i": "1"})])
    assert [a.state for a in h.sent] == ["firing"]
    h.feed(
        10, [Metric("a", 5, T0 + 10, {"job": "x"}), Metric("b", 1, T0 + 10, {"job": "x", "i": "2"})]
    )
    assert h.engine.error_count == 1 and "several series on the right" in h.engine.errors["R"]
    assert h.engine.status()[0]["error"] == h.engine.errors["R"]
    assert [a.state for a in h.sent] == ["firing"]  # no verdict: not resolved
    h.engine.tick(T0 + 20)
    assert h.engine.error_count == 2
    # i=1 goes stale (5 min): one series on the right again
    h.feed(
        400,
        [
            Metric("a", 0.5, T0 + 400, {"job": "x"}),
            Metric("b", 1, T0 + 400, {"job": "x", "i": "2"}),
        ],
    )
    assert "R" not in h.engine.errors and "error" not in h.engine.status()[0]
    assert [a.state for a in h.sent] == ["firing", "resolved"]


def test_a_firing_compound_alert_survives_a_restart_without_a_second_notification(tmp_path):
    path = tmp_path / "alerts.json"
    h = Harness(rule("a > 1 and on() b == 0"), state_path=path)
    h.feed(0, [Metric("a", 5, T0, {"k": "1"}), Metric("b", 0, T0)])
    assert [a.state for a in h.sent] == ["firing"]
    h.engine.save()
    samples = h.engine.series_snapshot()
    samples[0].write_bytes(samples[1])
    again = Harness(rule("a > 1 and on() b == 0"), state_path=path)
    again.engine.load()
    again.feed(10, [Metric("a", 5, T0 + 10, {"k": "1"}), Metric("b", 0, T0 + 10)])
    assert again.sent == []
    again.feed(20, [Metric("a", 5, T0 + 20, {"k": "1"}), Metric("b", 1, T0 + 20)])
    assert [a.state for a in again.sent] == ["resolved"] and again.sent[0].labels["k"] == "1"


def test_a_compound_rule_on_the_default_rules_metrics_keeps_them_and_only_them():
    e = AlertEngine([rule(CASCADE)], "h1", None, lambda a, n: None, lambda e: None)
    assert set(e.keep) == {"http_requests_total", "check_up"}
    assert e.keep["check_up"] == 300.0
    e.observe([Metric("cpu", 1, T0), Metric("check_up", 1, T0, {"check": "x"})], T0)
    assert set(e.series["check_up"]) == {(("check", "x"),)}
