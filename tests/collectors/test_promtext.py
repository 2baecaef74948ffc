"""The exposition parser (collectors/promtext.py) against what
prometheus_client makes of the same text, and what the second read threw
at it: odd spacing, exemplars, changed types, duplicates in disguise,
values float() takes and the format does not, what the hub would refuse,
and series that churn."""

from __future__ import annotations

import pytest

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
