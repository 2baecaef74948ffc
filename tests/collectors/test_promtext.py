"""The exposition parser (collectors/promtext.py) against what
prometheus_client makes of the same text, and what the second read threw
at it: odd spacing, exemplars, changed types, duplicates in disguise,
values float() takes and the format does not, what the hub would refuse,
and series that churn."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.promtext import FORGET_AFTER, ParseError, Parser, relabeler


def parse(text: str, max_series: int = 10_000, now: float = 0.0, parser=None):
    parser = parser or Parser(relabeler({}, True))
    parsed = parser.parse(text, max_series, now)
    return {(s.name, frozenset(s.labels.items()), s.type): v for s, v in parsed.samples}, parsed


def test_spacing_and_exemplars_read_as_prometheus_client_reads_them():
    got, _ = parse('foo\t1\n  bar{a="1"}   2  \n# TYPE c counter\nc_total{a="1"} 5 # {t="x"} 7\n')
    assert got == {
        ("foo", frozenset(), "gauge"): 1.0,
        ("bar", frozenset({("a", "1")}), "gauge"): 2.0,
        ("c_total", frozenset({("a", "1")}), "counter"): 5.0,
    }


def test_the_cache_never_answers_for_a_changed_type_and_names_stay_as_written():
    parser = Parser(relabeler({}, True))
    got, _ = parse("# TYPE jobs gauge\njobs 1\n", parser=parser)
    assert got == {("jobs", frozenset(), "gauge"): 1.0}
    got, _ = parse("# TYPE jobs counter\njobs 2\n", parser=parser)
    assert got == {("jobs", frozenset(), "counter"): 2.0}  # not renamed jobs_total


@pytest.mark.parametrize(
    "text",
    [
        "foo 1\nfoo{} 2\n",
        'foo{a="1",b="2"} 1\nfoo{b="2",a="1"} 2\n',
        'foo{a="1",} 1\nfoo{a="1"} 2\n',
        "foo 1_000\n",
        "foo 1 garbage\n",
        "foo{a=1} 1\n",
    ],
)
def test_what_prometheus_client_refuses_fails_the_whole_text(text):
    with pytest.raises(ParseError):
        parse(text)


def test_what_the_hub_would_refuse_is_dropped_and_counted_not_sent():
    long_name = "x" * 201
    text = f'{long_name} 1\nok{{a="{"v" * (1 << 20)}"}} 2\nnan NaN\ninf +Inf\nfine 3\n'
    got, parsed = parse(text)
    assert got == {("fine", frozenset(), "gauge"): 3.0}
    assert parsed.invalid == 4


def test_max_series_holds_against_churn_over_time_not_only_per_scrape():
    parser = Parser(relabeler({}, True))
    kept = []
    for scrape in range(5):  # 300 new series each scrape, 1,000 allowed
        text = "".join(f'req{{path="/{scrape}/{i}"}} 1\n' for i in range(300))
        _, parsed = parse(text, max_series=1000, now=scrape * 10.0, parser=parser)
        kept.append((len(parsed.samples), parsed.dropped_series))
    assert kept == [(300, 0), (300, 0), (300, 0), (100, 200), (0, 300)]
    # an hour later the old ones are forgotten, and new ones fit again
    _, parsed = parse("new 1\n", max_series=1000, now=40.0 + FORGET_AFTER + 1, parser=parser)
    assert len(parsed.samples) == 1


def test_openmetrics_types():
    parser = Parser(relabeler({}, True))
    text = (
        '# TYPE g gaugehistogram\ng_bucket{le="1"} 1\ng_bucket{le="+Inf"} 2\n'
        "g_gcount 2\ng_gsum 1\n# TYPE c counter\nc_total 3\nc_created 1700000000\n# EOF\n"
    )
    parsed = parser.parse(text, 100, 0.0, openmetrics=True)
    types = {(s.name, s.labels.get("le")): s.type for s, _ in parsed.samples}
    assert types == {
        ("g_bucket", "1"): "gauge",
        ("g_bucket", "+Inf"): "gauge",
        ("g_gcount", None): "gauge",
        ("g_gsum", None): "gauge",
        ("c_total", None): "counter",
        ("c_created", None): "gauge",
    }


class LineByLine(Parser):
    """The parser without its template: every text read line by line."""

    def _steady(self, template, lines, now):
        return None


def outcome(parser: Parser, text: str, now: float, max_series: int):
    try:
        parsed = parser.parse(text, max_series, now)
    except ParseError as err:
        return ("error", str(err))
    records = [(r.name, dict(r.labels), r.type, repr(r.value)) for r in parsed.records(5.0)]
    return (records, parsed.dropped_series, parsed.invalid)


# values as exporters write them, and as they should not: what the template
# must read exactly as the line by line reading does
VALUES = [
    "0",
    "1",
    "-2.5",
    "+3",
    "1e3",
    "1.5E-7",
    ".5",
    "5.",
    "NaN",
    "+Inf",
    "-Inf",
    "1e999",
    "1_000",
    "nan",
    "+NaN",
    "Infinity",
    "inf",
    "0x10",
    "\u0661",
    " 7",
    "7 ",
    "7\r",
    "\t7",
    "7 1700000000000",
    "",
    "1e",
    "--1",
    "In",
    "NaNa",
]
SERIES = [
    "up",
    'req_total{code="200"}',
    'req_total{code="500"}',
    'h_bucket{le="+Inf"}',
    'odd{a="x 1"}',
    'temp{sensor="a}b"}',
    "x" * 201,
]
COMMENTS = [
    "# TYPE req_total counter",
    "# TYPE req_total gauge",
    "# HELP up Up 1",
    "# TYPE h histogram",
    "",
    "  # indented",
    "   ",
]


@st.composite
def texts(draw):
    """A text of unique series with comments between, and a second one: the
    first's lines with new values, and now and then another change."""
    names = draw(st.lists(st.sampled_from(SERIES), unique=True, min_size=1))
    lines = []
    for name in names:
        lines += draw(st.lists(st.sampled_from(COMMENTS), max_size=2))
        lines.append((name, draw(st.sampled_from(VALUES[:12]))))

    def render(lines, values):
        return "\n".join(
            ln if isinstance(ln, str) else f"{ln[0]} {v}" for ln, v in zip(lines, values)
        )

    first = render(lines, [None if isinstance(ln, str) else ln[1] for ln in lines])
    values = [None if isinstance(ln, str) else draw(st.sampled_from(VALUES)) for ln in lines]
    second = render(lines, values)
    change = draw(st.sampled_from(["none", "line", "drop", "add", "crlf", "end"]))
    if change == "line":
        i = draw(st.integers(0, len(lines) - 1))
        edited = second.split("\n")
        edited[i] = draw(st.sampled_from([*COMMENTS, "up 1", "up  1", "up\t1", "req_total 1"]))
        second = "\n".join(edited)
    elif change == "drop":
        second = "\n".join(second.split("\n")[1:])
    elif change == "add":
        second += "\nnew_series 1"
    elif change == "crlf":
        second = second.replace("\n", "\r\n")
    elif change == "end":
        second += "\n"
    return first, second


@settings(max_examples=400, deadline=None)
@given(texts(), st.integers(1, 8))
def test_a_text_read_through_the_template_reads_as_line_by_line(pair, max_series):
    first, second = pair
    fast, slow = Parser(relabeler({}, True)), LineByLine(relabeler({}, True))
    for now, text in ((0.0, first), (10.0, second), (20.0, second), (30.0, first)):
        assert outcome(fast, text, now, max_series) == outcome(slow, text, now, max_series)


def test_series_read_through_the_template_count_as_served():
    parser = Parser(relabeler({}, True))
    text = "".join(f'req{{path="/{i}"}} 1\n' for i in range(3))
    parser.parse(text, 3, 0.0)
    parser.parse(text, 3, 10.0)  # through the template
    assert parser.parse(text, 3, 10.0).columns is not None
    # an hour and more of reads through the template: still the same three, none new fits
    for now in range(20, int(FORGET_AFTER) + 200, 50):
        assert len(parser.parse(text, 3, float(now)).samples) == 3
    parsed = parser.parse(text + "other 1\n", 3, FORGET_AFTER + 300.0)
    assert (len(parsed.samples), parsed.dropped_series) == (3, 1)


def test_the_template_keeps_max_series_as_reading_line_by_line_does():
    def text(prefix: str) -> str:
        return "".join(f'{prefix}{{i="{i}"}} 1\n' for i in range(3))

    # served through the template until 50 s, then another text: an hour after
    # 50 s (not after 0 s, the last read line by line) they still count
    parser = Parser(relabeler({}, True))
    for now in (0.0, 10.0, 50.0):
        parser.parse(text("a"), 6, now)
    parser.parse(text("b"), 6, 55.0)
    parsed = parser.parse(text("c"), 6, 3620.0)
    assert (len(parsed.samples), parsed.dropped_series) == (0, 3)

    # an hour without reading the text (OpenMetrics meanwhile): its series are
    # forgotten, and the template with them
    parser = Parser(relabeler({}, True))
    parser.parse(text("a"), 3, 0.0)
    parser.parse(text("a"), 3, 10.0)
    parser.parse("# EOF\n", 3, FORGET_AFTER + 100.0, openmetrics=True)
    assert len(parser.parse(text("a"), 3, FORGET_AFTER + 110.0).samples) == 3
    parsed = parser.parse(text("b"), 3, FORGET_AFTER + 120.0)
    assert (len(parsed.samples), parsed.dropped_series) == (0, 3)
