"""The alert expression language: parsing, errors, evaluation on recorded series."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerts.expr import (
    FUNCTIONS,
    STALE,
    Expr,
    ExprError,
    LabelMatcher,
    Selector,
    compare,
    evaluate,
    parse,
    parse_clear,
)

# --- parsing -----------------------------------------------------------------


def test_the_design_example():
    e = parse('avg_over_time(cpu_usage_percent{cpu="all"}[5m]) > 80')
    assert e == Expr(
        text='avg_over_time(cpu_usage_percent{cpu="all"}[5m]) > 80',
        func="avg_over_time",
        selector=Selector("cpu_usage_percent", (LabelMatcher("cpu", "=", "all"),)),
        window=300.0,
        arg=None,
        op=">",
        threshold=80.0,
    )
    assert e.lookback() == 300.0


@pytest.mark.parametrize(
    ("text", "func", "window", "arg", "op", "threshold"),
    [
        ("cpu > 80", None, None, None, ">", 80.0),
        ("max_over_time(cpu[30s]) >= 1.5", "max_over_time", 30.0, None, ">=", 1.5),
        ("min_over_time(cpu[1h30m]) < -2", "min_over_time", 5400.0, None, "<", -2.0),
        ("rate(cpu[500ms]) <= 1e3", "rate", 0.5, None, "<=", 1000.0),
        ("increase(cpu[1d]) == 0", "increase", 86400.0, None, "==", 0.0),
        ("increase(cpu[2w]) != +.5", "increase", 1209600.0, None, "!=", 0.5),
        ("absent(cpu)", "absent", None, None, "==", 1.0),
        ("absent(cpu[10m])", "absent", 600.0, None, "==", 1.0),
        ("absent(cpu) == 0", "absent", None, None, "==", 0.0),
        ("predict_linear(cpu[6h], 14400) < 0", "predict_linear", 21600.0, 14400.0, "<", 0.0),
        ("predict_linear(cpu[1h], -3.6E3) > 5", "predict_linear", 3600.0, -3600.0, ">", 5.0),
        ("avg_over_time(cpu[1.5m]) > 1", "avg_over_time", 90.0, None, ">", 1.0),
        ("avg_over_time(cpu[1h1m1s1ms]) > 1", "avg_over_time", 3661.001, None, ">", 1.0),
    ],
)
def test_every_form(text, func, window, arg, op, threshold):
    e = parse(text)
    assert (e.func, e.selector, e.window, e.arg, e.op, e.threshold) == (
        func,
        Selector("cpu"),
        window,
        arg,
        op,
        threshold,
    )
    assert e.text == text


def test_lookback_is_the_window_or_the_staleness_bound():
    assert parse("cpu > 1").lookback() == STALE == 300.0
    assert parse("absent(cpu)").lookback() == STALE
    assert parse("absent(cpu[1h])").lookback() == 3600.0
    assert parse("rate(cpu[2m]) > 1").lookback() == 120.0


def test_metric_names_may_hold_colons_and_function_names():
    assert parse("job:http_requests:rate5m > 1").selector.metric == "job:http_requests:rate5m"
    assert parse("rate > 1").selector == Selector("rate")
    assert parse("rate(rate[1m]) > 1").selector == Selector("rate")


@pytest.mark.parametrize(
    ("text", "matchers"),
    [
        ("cpu{} > 1", ()),
        ('cpu{a="x"} > 1', (("a", "=", "x"),)),
        ('cpu{a="x",} > 1', (("a", "=", "x"),)),
        (
            """cpu{a!="x", _b=~'sd.*', c9!~"lo|tun"} > 1""",
            (("a", "!=", "x"), ("_b", "=~", "sd.*"), ("c9", "!~", "lo|tun")),
        ),
        (r'cpu{path="C:\\dir \"q\""} > 1', (("path", "=", 'C:\\dir "q"'),)),
        (r"cpu{path='it\'s'} > 1", (("path", "=", "it's"),)),
        (r"""cpu{a='say "hi"'} > 1""", (("a", "=", 'say "hi"'),)),
        (r'cpu{a="tab\there\nnl\r"} > 1', (("a", "=", "tab\there\nnl\r"),)),
        (r'cpu{a=~"sd[a-z]\\d+"} > 1', (("a", "=~", r"sd[a-z]\d+"),)),
        ('cpu{a="{x},[y]>1"} > 1', (("a", "=", "{x},[y]>1"),)),
    ],
)
def test_matchers_and_escapes(text, matchers):
    got = parse(text).selector.matchers
    assert [(m.name, m.op, m.value) for m in got] == [tuple(m) for m in matchers]


@pytest.mark.parametrize(
    "text",
    [
        'max_over_time(cpu{a="x",b=~"y"}[5m])>80',
        ' max_over_time ( cpu { a = "x" , b =~ "y" } [ 5m ] ) > 80 ',
        '\tmax_over_time(\n  cpu{\n    a="x",\n    b=~"y",\n  }[5m]\n)\n>\n80\n',
    ],
)
def test_whitespace_between_any_tokens(text):
    e = parse(text)
    assert e.selector == Selector(
        "cpu", (LabelMatcher("a", "=", "x"), LabelMatcher("b", "=~", "y"))
    )
    assert (e.func, e.window, e.op, e.threshold) == ("max_over_time", 300.0, ">", 80.0)


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("max_over_time(cpu[5x]) > 1", 19, 'expected a duration like 5m, 30s or 1h30m, found "5x"'),
        ("max_over_time(cpu[]) > 1", 19, 'expected a duration like 5m, 30s or 1h30m, found "]"'),
        ("max_over_time(cpu[300]) > 1", 19, 'found "300"'),
        ("max_over_time(cpu[0s]) > 1", 19, "a range must be longer than 0"),
        ("max_over_time(cpu[5m) > 1", 21, 'expected "]" to close the range, found ")"'),
        ("max_over_time(cpu[5m]", 22, 'expected ")" to close max_over_time(, found end of input'),
        ("sum(cpu[5m]) > 1", 1, 'unknown function "sum"'),
        ("avg_overtime(cpu[5m]) > 1", 1, 'did you mean "avg_over_time"?'),
        ("rate(cpu) > 1", 9, 'rate() needs a range: expected "[" as in rate(cpu[5m])'),
        ("cpu[5m] > 1", 4, "a range needs a function around it, like avg_over_time(cpu[5m])"),
        ("cpu", 4, "expected a comparison (>, >=, <, <=, ==, !=), found end of input"),
        ("rate(cpu[5m])", 14, "expected a comparison"),
        ("cpu = 1", 5, 'found "="; use == to test equality'),
        ("cpu > 80 and mem > 1", 10, 'unexpected "and" after the expression'),
        ("cpu > 80)", 9, 'unexpected ")" after the expression'),
        ("cpu >", 6, "expected a number to compare with, found end of input"),
        ("cpu > NaN", 7, "NaN and Inf are not allowed"),
        ("cpu > -inf", 7, 'found "-inf": NaN and Inf are not allowed'),
        ("cpu > 1e999", 7, "number 1e999 is out of range"),
        ('cpu{a=~"sd("} > 1', 8, "invalid regular expression 'sd(': missing ), unterminated"),
        ('cpu{a!~"*"} > 1', 8, "invalid regular expression '*': nothing to repeat"),
        ('cpu{a="x" > 1', 11, 'expected "}" or "," after the matcher, found ">"'),
        ('cpu{a="x} > 1', 7, 'unterminated string: expected a closing "'),
        ("cpu{a=x} > 1", 7, 'expected a quoted string, found "x"'),
        ('cpu{a=="x"} > 1', 7, 'expected a quoted string, found "="'),
        ('cpu{a~"x"} > 1', 6, "expected =, !=, =~ or !~ after the label name"),
        ('cpu{9a="x"} > 1', 5, 'expected a label name or "}", found "9a"'),
        ('cpu{a="x",,} > 1', 11, 'expected a label name, found ","'),
        (r'cpu{a="\d"} > 1', 8, 'unknown escape "\\d" in a string; write "\\\\" for a backslash'),
        ('{a="x"} > 1', 1, 'expected a metric name or a function like avg_over_time(, found "{"'),
        ("rate([5m]) > 1", 6, 'expected a metric name, found "["'),
        ("predict_linear(d[1h]) < 0", 21, 'expected "," then the seconds ahead to predict'),
        ("predict_linear(d[1h], x) < 0", 23, 'expected the seconds ahead to predict, found "x"'),
        ("", 1, "expected a metric name"),
    ],
)
def test_errors_name_what_was_expected_and_where(text, column, message):
    with pytest.raises(ExprError) as info:
        parse(text)
    assert info.value.column == column
    assert message in info.value.message
    assert info.value.text == text
    assert str(info.value) == f"col {column}: {info.value.message}"
    assert isinstance(info.value, ValueError)


def test_pretty_draws_a_caret_under_the_column():
    with pytest.raises(ExprError) as info:
        parse("max_over_time(cpu[5x]) > 80")
    assert info.value.pretty() == (
        'col 19: expected a duration like 5m, 30s or 1h30m, found "5x"\n'
        "  max_over_time(cpu[5x]) > 80\n"
        "                    ^"
    )


def test_pretty_keeps_tabs_and_flattens_newlines():
    with pytest.raises(ExprError) as info:
        parse("\tcpu\n> x")
    assert info.value.column == 8
    assert info.value.pretty() == (
        'col 8: expected a number to compare with, found "x"\n  \tcpu > x\n  \t      ^'
    )


def test_pretty_at_end_of_input():
    with pytest.raises(ExprError) as info:
        parse("cpu >")
    assert info.value.pretty().splitlines()[1:] == ["  cpu >", "       ^"]


# --- clear -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "clear", "want"),
    [
        ("cpu > 80", "< 70", ("<", 70.0)),
        ("cpu > 80", "<=80", ("<=", 80.0)),
        ("cpu > 80", " < 80 ", ("<", 80.0)),
        ("cpu >= 80", "< 80", ("<", 80.0)),
        ("cpu < 10", "> 15", (">", 15.0)),
        ("cpu <= 10", ">= 10.5", (">=", 10.5)),
    ],
)
def test_clear(expr, clear, want):
    assert parse_clear(clear, parse(expr)) == want


@pytest.mark.parametrize(
    ("expr", "clear", "column", "message"),
    [
        ("cpu > 80", "70", 1, 'expected a comparison before the number, like "< 70"'),
        ("cpu > 80", "", 1, "expected a comparison and a number"),
        ("cpu > 80", "< ", 3, "expected a number, found end of input"),
        ("cpu > 80", "< 70 %", 6, 'unexpected "%" after the number'),
        ("cpu > 80", "> 70", 1, 'expected < or <= to clear an alert on ">", found ">"'),
        ("cpu < 10", "== 70", 1, 'expected > or >= to clear an alert on "<", found "=="'),
        ("cpu > 80", "< 90", 3, '"< 90" overlaps the firing condition "> 80"'),
        ("cpu >= 80", "<= 80", 4, '"<= 80" overlaps the firing condition ">= 80"'),
        ("cpu <= 10", ">= 10", 4, "overlaps"),
        ("cpu == 0", "> 0", 1, 'clear needs an expr compared with >, >=, < or <=, not "=="'),
        ("absent(cpu)", "< 1", 1, "clear needs an expr compared with >, >=, < or <="),
    ],
)
def test_bad_clear(expr, clear, column, message):
    with pytest.raises(ExprError) as info:
        parse_clear(clear, parse(expr))
    assert info.value.column == column
    assert message in info.value.message
    assert info.value.text == clear


# --- matching --------------------------------------------------------------------


def test_a_missing_label_is_the_empty_string():
    assert LabelMatcher("x", "=", "").matches({})
    assert not LabelMatcher("x", "=", "").matches({"x": "1"})
    assert not LabelMatcher("x", "!=", "").matches({})
    assert LabelMatcher("x", "!=", "").matches({"x": "1"})
    assert LabelMatcher("x", "=~", "a|").matches({})
    assert LabelMatcher("x", "!~", ".+").matches({})


def test_regex_matchers_are_anchored_at_both_ends():
    sd = LabelMatcher("device", "=~", "sd.*")
    assert sd.matches({"device": "sda1"})
    assert not sd.matches({"device": "xsda"})
    alt = LabelMatcher("device", "=~", "sda|sdb")
    assert alt.matches({"device": "sdb"})
    assert not alt.matches({"device": "sdab"})
    assert not alt.matches({"device": "sda\n"})
    assert LabelMatcher("fs", "!~", "tmpfs|overlay").matches({"fs": "ext4"})
    assert not LabelMatcher("fs", "!~", "tmpfs|overlay").matches({"fs": "tmpfs"})
    assert LabelMatcher("m", "=~", "(?i)root").matches({"m": "ROOT"})


def test_selector_matches_name_and_every_matcher():
    s = parse('disk{mount="/",fs!~"tmpfs"} > 1').selector
    assert s.matches("disk", {"mount": "/", "fs": "ext4"})
    assert not s.matches("disk", {"mount": "/", "fs": "tmpfs"})
    assert not s.matches("disk", {"mount": "/boot", "fs": "ext4"})
    assert not s.matches("disk_total", {"mount": "/", "fs": "ext4"})
    assert Selector("disk").matches("disk", {"anything": "x"})


def test_matchers_are_hashable_values():
    assert {parse('a{x=~"y"} > 1'), parse('a{x=~"y"} > 1')} == {parse('a{x=~"y"} > 1')}
    with pytest.raises(re.error):
        LabelMatcher("x", "=~", "(")
    with pytest.raises(ValueError, match="operator"):
        LabelMatcher("x", "==", "y")


# --- evaluation ------------------------------------------------------------------

NOW = 1_000.0
# One sample every 10 s; the one at 700 is exactly 5m old at NOW.
GAUGE = [(690.0, 500.0), (700.0, 100.0), (710.0, 20.0), (850.0, 60.0), (1_000.0, 40.0)]


def _eval(text: str, samples, now: float = NOW):
    return evaluate(parse(text), samples, now)


def test_over_time_excludes_the_sample_exactly_a_window_old():
    assert _eval("avg_over_time(x[5m]) > 0", GAUGE) == 40.0  # 20, 60, 40
    assert _eval("max_over_time(x[5m]) > 0", GAUGE) == 60.0
    assert _eval("min_over_time(x[5m]) > 0", GAUGE) == 20.0
    assert _eval("max_over_time(x[301s]) > 0", GAUGE) == 100.0
    assert _eval("min_over_time(x[150s]) > 0", GAUGE) == 40.0  # 850 is exactly 150 s old


def test_over_time_ignores_samples_after_now_and_needs_one_sample():
    assert _eval("min_over_time(x[2m]) > 0", GAUGE, now=860.0) == 60.0  # 1000 is not yet
    assert _eval("avg_over_time(x[1m]) > 0", GAUGE, now=900.0) == 60.0
    assert _eval("avg_over_time(x[1m]) > 0", GAUGE, now=840.0) is None
    assert _eval("avg_over_time(x[1m]) > 0", [], now=840.0) is None


COUNTER = [
    (0.0, 10.0),
    (10.0, 15.0),
    (20.0, 25.0),
    (30.0, 3.0),  # restarted: counted as +3
    (40.0, 8.0),
    (50.0, 8.0),
    (60.0, 1.0),  # restarted again: +1
]


def test_increase_and_rate_across_counter_resets():
    # 10 + 3 + 5 + 0 + 1, no extrapolation to the window's edges
    assert _eval("increase(c[1m]) > 0", COUNTER, now=60.0) == 19.0  # sample at 0 is out
    assert _eval("increase(c[61s]) > 0", COUNTER, now=60.0) == 24.0
    assert _eval("rate(c[61s]) > 0", COUNTER, now=60.0) == 24.0 / 60.0
    assert _eval("rate(c[1m]) > 0", COUNTER, now=60.0) == 19.0 / 50.0
    assert _eval("increase(c[25s]) > 0", COUNTER, now=40.0) == 8.0  # 25 -> 3 -> 8
    assert _eval("increase(c[15s]) > 0", COUNTER, now=60.0) == 1.0  # 8 -> 1


def test_increase_and_rate_need_two_samples():
    assert _eval("increase(c[10s]) > 0", COUNTER, now=60.0) is None
    assert _eval("rate(c[10s]) > 0", COUNTER, now=60.0) is None
    assert _eval("rate(c[5m]) > 0", [], now=60.0) is None
    assert _eval("rate(c[5m]) > 0", [(5.0, 1.0), (5.0, 2.0)], now=60.0) is None  # no time passed


def test_plain_selector_takes_the_latest_fresh_sample():
    samples = [(100.0, 1.0), (200.0, 2.0), (400.0, 3.0)]
    assert _eval("x > 0", samples, now=400.0) == 3.0
    assert _eval("x > 0", samples, now=399.0) == 2.0  # 400 is in the future
    assert _eval("x > 0", samples, now=699.0) == 3.0
    assert _eval("x > 0", samples, now=700.0) is None  # exactly STALE old: stale
    assert _eval("x > 0", samples, now=50.0) is None
    assert _eval("x > 0", [], now=50.0) is None


def test_absent_is_left_to_the_engine():
    assert _eval("absent(x)", GAUGE) is None
    assert _eval("absent(x[5m])", GAUGE) is None


def test_predict_linear_on_a_line_is_exact():
    line = [(float(t), 3.0 * t - 7.0) for t in range(960, 1001, 10)]
    assert _eval("predict_linear(x[5m], 0) < 0", line) == 2993.0
    assert _eval("predict_linear(x[5m], 3600) < 0", line) == 3.0 * 4600 - 7.0
    assert _eval("predict_linear(x[5m], -60) < 0", line, now=1010.0) == 3.0 * 950 - 7.0
    # Prometheus reads the line at now + t, not at the last sample + t.
    assert _eval("predict_linear(x[5m], 10) < 0", line, now=1005.0) == 3.0 * 1015 - 7.0


def _least_squares(points, at):
    # The textbook normal equations, independent of the module's centred sums.
    n = len(points)
    sx = sum(t for t, _ in points)
    sy = sum(v for _, v in points)
    sxx = sum(t * t for t, _ in points)
    sxy = sum(t * v for t, v in points)
    slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    intercept = (sy - slope * sx) / n
    return intercept + slope * at


def test_predict_linear_on_noisy_disk_usage():
    noisy = [
        (700.0, 51.2),
        (730.0, 52.9),
        (760.0, 52.1),
        (790.0, 55.0),
        (820.0, 54.4),
        (850.0, 57.3),
        (880.0, 56.8),
        (910.0, 59.9),
        (940.0, 59.1),
        (970.0, 61.7),
        (1000.0, 62.0),
    ]
    got = _eval("predict_linear(x[5m], 7200) > 100", noisy)
    assert got == pytest.approx(_least_squares(noisy[1:], NOW + 7200), rel=1e-9)  # 700 is out
    assert got != pytest.approx(_least_squares(noisy, NOW + 7200), rel=1e-9)


def test_predict_linear_needs_two_samples_at_different_times():
    assert _eval("predict_linear(x[5m], 60) > 0", [(990.0, 1.0)]) is None
    assert _eval("predict_linear(x[5m], 60) > 0", [(990.0, 1.0), (990.0, 2.0)]) is None
    assert _eval("predict_linear(x[5m], 60) > 0", []) is None


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        (">", False, False, True),
        (">=", False, True, True),
        ("<", True, False, False),
        ("<=", True, True, False),
        ("==", False, True, False),
        ("!=", True, False, True),
    ],
)
def test_compare(op, below, equal, above):
    assert [compare(op, v, 80.0) for v in (79.9, 80.0, 80.1)] == [below, equal, above]
    assert compare(op, math.nan, 80.0) is (op == "!=")


def test_compare_refuses_an_unknown_operator():
    with pytest.raises(ValueError, match="unknown comparison"):
        compare("=", 1.0, 1.0)


# --- properties --------------------------------------------------------------------


@st.composite
def counters(draw):
    """A counter series with resets, and each step's true increase."""
    value = draw(st.integers(0, 1000))
    t = draw(st.integers(0, 100))
    samples = [(float(t), float(value))]
    steps = []
    for _ in range(draw(st.integers(0, 30))):
        t += draw(st.integers(1, 60))
        if value > 0 and draw(st.booleans()):
            value = draw(st.integers(0, value - 1))  # restarted, then counted to `value`
            steps.append(value)
        else:
            step = draw(st.integers(0, 10**6))
            value += step
            steps.append(step)
        samples.append((float(t), float(value)))
    return samples, steps


@given(counters(), st.data())
def test_increase_matches_the_true_increase(series, data):
    samples, steps = series
    first, last = samples[0][0], samples[-1][0]
    now = data.draw(st.integers(int(first), int(last) + 100), label="now")
    window = data.draw(st.integers(1, int(last - first) + 200), label="window")
    inside = [i for i, (t, _) in enumerate(samples) if now - window < t <= now]
    want = sum(steps[i - 1] for i in inside[1:])
    e = parse(f"increase(c[{window}s]) > 0")
    got = evaluate(e, samples, float(now))
    rate = evaluate(dataclasses.replace(e, func="rate"), samples, float(now))
    if len(inside) < 2:
        assert got is None
        assert rate is None
    else:
        assert got == want
        elapsed = samples[inside[-1]][0] - samples[inside[0]][0]
        assert rate == pytest.approx(want / elapsed)


_UNITS = (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def _render_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    out = []
    for unit, size in _UNITS:
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


def _render_string(value: str, quote: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return quote + escaped + quote


def render(e: Expr, ws, quote: str = '"') -> str:
    """Expression text for `e`, with ws() between tokens."""
    sel = e.selector.metric
    if e.selector.matchers:
        parts = [
            f"{ws()}{m.name}{ws()}{m.op}{ws()}{_render_string(m.value, quote)}"
            for m in e.selector.matchers
        ]
        sel += f"{ws()}{{{','.join(parts)}{ws()}}}"
    if e.window is not None:
        sel += f"{ws()}[{ws()}{_render_duration(e.window)}{ws()}]"
    if e.func is None:
        body = sel
    elif e.func == "predict_linear":
        body = f"{e.func}{ws()}({ws()}{sel}{ws()},{ws()}{e.arg!r}{ws()})"
    else:
        body = f"{e.func}{ws()}({ws()}{sel}{ws()})"
    return f"{ws()}{body}{ws()}{e.op}{ws()}{e.threshold!r}{ws()}"


numbers = st.floats(allow_nan=False, allow_infinity=False)
label_values = st.text(max_size=12)


@st.composite
def matchers(draw):
    name = draw(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True))
    op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
    value = draw(label_values)
    if op in ("=~", "!~"):
        value = draw(st.sampled_from([re.escape(value), "sd[a-z]\\d+", ".*", "a|b", "(?i)x"]))
    return LabelMatcher(name, op, value)


@st.composite
def exprs(draw):
    metric = draw(st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True))
    selector = Selector(metric, tuple(draw(st.lists(matchers(), max_size=4))))
    func = draw(st.sampled_from([None, *FUNCTIONS]))
    window = draw(st.integers(1, 10**10)) / 1000
    if func is None or (func == "absent" and draw(st.booleans())):
        window = None
    arg = draw(numbers) if func == "predict_linear" else None
    op = draw(st.sampled_from([">", ">=", "<", "<=", "==", "!="]))
    return Expr("", func, selector, window, arg, op, draw(numbers))


@settings(max_examples=300)
@given(exprs(), st.lists(st.sampled_from(["", " ", "\t", "\n  "]), min_size=1), st.data())
def test_parse_render_round_trip(e, spaces, data):
    gaps = iter(spaces * 200)
    quote = data.draw(st.sampled_from(['"', "'"]), label="quote")
    text = render(e, lambda: next(gaps), quote)
    assert parse(text) == dataclasses.replace(e, text=text)
