"""The engine's shortcuts against the plain evaluator: RunningFit gives the
same predict_linear, a Bound never calls a true condition false (covered
or not), Coverage answers as the plain span does, and an engine with
bounds and coverage's shortcut makes the same transitions as one without."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.alerts.engine import AlertEngine, build_rule
from agent.alerts.expr import evaluator, parse
from agent.alerts.window import Coverage, RunningFit, bound, coverage, covered_fraction
from agent.core.records import Metric

# A series as the engine sees it: (gap to the previous sample, value, how
# long after it the evaluation runs, how many samples to trim off the front)
steps = st.lists(
    st.tuples(
        st.floats(0.5, 120),
        st.floats(-1e6, 1e6, allow_nan=False),
        st.sampled_from([0.0, 0.0, 0.0, 1.0, 30.0]),
        st.sampled_from([0, 0, 0, 0, 5]),
    ),
    min_size=1,
    max_size=150,
)


def replay(data, value_of=lambda v: v):
    """Yield (ts, values, now) as the engine's arrays grow and get trimmed."""
    ts, values = array("d"), array("d")
    t = 1_790_000_000.0
    for gap, v, late, trim in data:
        t += gap
        ts.append(t)
        values.append(value_of(v))
        if trim and len(ts) > trim + 40:
            del ts[:trim]
            del values[:trim]
        yield ts, values, t + late


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from(["1m", "5m", "15m"]), st.sampled_from([0, 600, 3600]))
def test_running_fit_equals_the_evaluator(data, window, ahead):
    expr = parse(f"predict_linear(x[{window}], {ahead}) > 0")
    fit, exact = RunningFit(expr), evaluator(expr)
    scale = max(abs(v) for _, v, _, _ in data) + 1.0
    # Both round, differently: timestamps near 1.8e9 carry ~2e-7 s of
    # error, times the slope (up to scale / the shortest gap), times the
    # horizon. A wrong sum is off by about `scale`, far beyond this.
    slack = 1e-6 * scale * (1 + ahead) / min(gap for gap, _, _, _ in data)
    # the forecast band's far end, 3/2 of the horizon ahead, from the fit's slope
    far = evaluator(parse(f"predict_linear(x[{window}], {ahead * 1.5}) > 0"))
    for ts, values, now in replay(data):
        want, got = exact(ts, values, now), fit(ts, values, now)
        if want is None:
            assert got is None
        else:
            assert got is not None
            assert math.isclose(got, want, rel_tol=1e-7, abs_tol=slack)
            if fit.slope is not None:
                end = far(ts, values, now)
                assert end is not None
                assert math.isclose(got + fit.slope * ahead / 2, end, rel_tol=1e-7, abs_tol=slack)


def test_running_fit_refits_after_time_goes_back_or_samples_run_ahead():
    expr = parse("predict_linear(x[5m], 60) > 0")
    fit, exact = RunningFit(expr), evaluator(expr)
    ts = array("d", [100.0 + 10 * i for i in range(40)])
    values = array("d", [2.0 * i for i in range(40)])
    assert fit(ts, values, 490.0) == pytest.approx(exact(ts, values, 490.0))
    assert fit(ts, values, 450.0) == pytest.approx(exact(ts, values, 450.0))  # back in time
    assert fit(ts, values, 495.0) == pytest.approx(exact(ts, values, 495.0))


CONDITIONS = [
    "avg_over_time(x[5m]) > 10",
    "avg_over_time(x[5m]) >= 10",
    "max_over_time(x[5m]) > 10",
    "avg_over_time(x[5m]) < -10",
    "min_over_time(x[5m]) <= -10",
    "increase(x[5m]) > 100",
    "rate(x[1m]) > 2",
    "rate(x[5m]) >= 1",
]


@pytest.mark.parametrize("text", CONDITIONS)
@settings(max_examples=150, deadline=None)
@given(
    data=steps,
    counter=st.booleans(),
    nan_at=st.integers(-1, 150),
    fraction=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_a_bound_never_calls_a_true_condition_false(text, data, counter, nan_at, fraction):
    """Used as the engine uses it: every sample through quiet(); when quiet
    says nothing, tighten(); a series it calls quiet must be false."""
    expr = parse(text)
    gate, exact = bound(expr), evaluator(expr)
    assert gate is not None
    total = [0.0]

    def counter_value(v: float) -> float:
        # a counter that mostly rises and sometimes restarts
        total[0] = 0.0 if v < -9e5 else total[0] + abs(v) / 1e4
        return total[0]

    cover = coverage(expr, fraction, 10**9)  # None: a shape that needs none
    for i, (ts, values, now) in enumerate(replay(data, counter_value if counter else float)):
        if i == nan_at:
            values[-1] = math.nan
        quiet = gate.quiet(ts, values, now) or gate.tighten(ts, values, now)
        # as the engine asks: after the bound, when it proved nothing
        covered = cover is None or cover(ts, now)
        value = exact(ts, values, now)
        if quiet:
            # false, and so false whether or not the window is covered
            assert value is None or not gate.test(value, expr.threshold), (i, value)
            assert not (covered and value is not None and gate.test(value, expr.threshold))


@pytest.mark.parametrize(
    "text",
    ["x > 1", "avg_over_time(x[5m]) == 1", "rate(x[5m]) < 1", "predict_linear(x[5m], 60) > 1"],
)
def test_no_bound_where_none_is_sound(text):
    assert bound(parse(text)) is None


def test_a_bound_spares_the_window_for_quiet_series():
    expr = parse("avg_over_time(x[5m]) > 90")
    gate = bound(expr)
    assert gate is not None
    ts, values = array("d"), array("d")
    decided_by_bound = 0
    for i in range(100):
        ts.append(10.0 * i)
        values.append(50.0)
        if gate.quiet(ts, values, ts[-1]):
            decided_by_bound += 1
        else:
            assert gate.tighten(ts, values, ts[-1])
    assert decided_by_bound == 99  # only the first sample needed the window


# -- coverage -------------------------------------------------------------------------


def plain_covered(ts, now, window, fraction):
    """The definition: the samples in (now - window, now] span fraction x window."""
    inside = [t for t in ts if now - window < t <= now]
    return bool(inside) and inside[0] <= inside[-1] - window * fraction


def test_coverage_waits_for_half_the_window():
    cover = Coverage(60.0, 0.5, 10**9)
    ts = array("d")
    seen = []
    for t in (0.0, 10.0, 20.0, 30.0, 40.0):
        ts.append(t)
        seen.append(cover(ts, t))
    assert seen == [False, False, False, True, True]  # 30 s of a 60 s window at t=30
    assert covered_fraction(ts, 40.0, 60.0) == pytest.approx(40 / 60)


def test_coverage_is_lost_across_a_gap_and_regained():
    cover = Coverage(60.0, 0.5, 10**9)
    ts = array("d", [0.0, 10.0, 20.0, 30.0])
    assert cover(ts, 30.0)
    ts.append(100.0)  # 70 s without a sample: the window holds only this one
    assert not cover(ts, 100.0) and not cover.empty(ts, 100.0)
    ts.extend([110.0, 120.0])
    assert not cover(ts, 120.0)
    ts.append(130.0)
    assert cover(ts, 130.0)
    assert cover.empty(ts, 200.0) and not cover(ts, 200.0)  # stale: nothing in the window


def test_coverage_ignores_samples_ahead_of_now():
    cover = Coverage(60.0, 0.5, 10**9)
    ts = array("d", [0.0, 10.0, 20.0, 30.0, 40.0])
    assert cover(ts, 40.0)
    assert not cover(ts, 25.0)  # evaluated back in time: 20 s of samples up to then


def test_a_window_holding_as_many_samples_as_are_kept_is_covered():
    cover = Coverage(3600.0, 0.5, 4)
    ts = array("d", [0.0, 1.0, 2.0])
    assert not cover(ts, 2.0)
    ts.append(3.0)
    assert cover(ts, 3.0)


@pytest.mark.parametrize(
    ("text", "fraction"),
    [
        ("x > 1", 0.5),
        ("absent(x[5m])", 0.5),
        ("avg_over_time(x[5m]) > 1", 0.0),
        ("increase(x[5m]) > 1", 0.5),  # seen on part of the window: only more on all of it
        ("max_over_time(x[5m]) >= 1", 0.5),
        ("min_over_time(x[5m]) < 1", 0.5),
    ],
)
def test_no_coverage_where_it_does_not_apply(text, fraction):
    assert coverage(parse(text), fraction, 100) is None


@pytest.mark.parametrize(
    "text",
    [
        "avg_over_time(x[5m]) > 1",
        "rate(x[5m]) > 1",
        "increase(x[5m]) < 1",  # "no heartbeat": a part of the window proves nothing
        "max_over_time(x[5m]) < 1",
        "min_over_time(x[5m]) > 1",
        "predict_linear(x[5m], 60) > 1",
    ],
)
def test_coverage_where_a_part_of_the_window_could_mislead(text):
    assert coverage(parse(text), 0.5, 100) is not None


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([60.0, 300.0, 900.0]), st.sampled_from([0.1, 0.5, 0.9, 1.0]))
# found once: a trim at a late `now` dropped the sample that proved coverage,
# then the clock went back and the shortcut still answered covered
@example(
    data=[(1.0, 0.0, 0.0, 0), (36.0, 0.0, 0.0, 0), (65.0, 0.0, 0.0, 0), (65.0, 0.0, 0.0, 0),
          (108.0, 0.0, 0.0, 0), (1.0, 0.0, 30.0, 5), (1.0, 0.0, 0.0, 0)],
    window=300.0,
    fraction=0.9,
)  # fmt: skip
def test_coverage_equals_the_plain_span(data, window, fraction):
    """Its shortcut (covered until the sample that proved it leaves the
    window) answers as the definition does, with the engine's trimming:
    only samples older than the window are dropped."""
    cover = Coverage(window, fraction, 10**9)
    ts = array("d")
    t = 1_790_000_000.0
    for gap, _, late, trim in data:
        t += gap
        ts.append(t)
        now = t + late
        if trim:
            while ts and ts[0] <= now - window - trim:
                del ts[0]
        assert cover(ts, now) == plain_covered(ts, now, window, fraction), (list(ts), now)
        back = now - late - 40.0  # now and then the clock goes back
        if late == 30.0:
            assert cover(ts, back) == plain_covered(ts, back, window, fraction)


# -- the engine, with and without its shortcuts ---------------------------------------


class PlainEngine(AlertEngine):
    """No bounds, and coverage by the definition, for every series."""

    def _new_series(self, metric, key):
        series = super()._new_series(metric, key)
        entries = []
        for entry in series.rules:
            cover = entry[6]
            if cover is not None:
                cover = PlainCoverage(cover.window, cover.need / cover.window, cover.enough)
            entries.append((*entry[:5], None, cover))
        series.rules = entries
        return series


class PlainCoverage(Coverage):
    def __call__(self, ts, now):
        return plain_covered(ts, now, self.window, self.need / self.window)


ENGINE_RULES = [
    ("avg_over_time(x[5m]) > 10", 60.0),
    ("max_over_time(x[1m]) > 10", 0.0),
    ("min_over_time(x[5m]) <= -10", 30.0),
    ("avg_over_time(x[1m]) < -10", 0.0),
    ("avg_over_time(x[1m]) > 20", 0.0),
    ("predict_linear(x[5m], 600) < -100", 60.0),
    ("predict_linear(x[1m], 60) > 100", 0.0),
]


# Mostly a steady interval, now and then a gap that empties or thins a window.
engine_steps = st.lists(
    st.tuples(
        st.sampled_from([1.0, 5.0, 10.0, 10.0, 10.0, 15.0, 45.0, 100.0, 400.0]),
        st.sampled_from([-1e6, -3e5, -1.5e5, -5e4, 0.0, 0.0, 5e4, 1.5e5, 3e5, 1e6]),
        st.sampled_from([0.0, 0.0, 0.0, 1.0, 30.0]),
        st.just(0),
    ),
    min_size=1,
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(
    data=engine_steps,
    fraction=st.sampled_from([0.0, 0.5, 0.9]),
    tick_every=st.integers(1, 5),
    walk=st.booleans(),
)
def test_the_engine_makes_the_same_transitions_without_its_shortcuts(
    data, fraction, tick_every, walk
):
    rules = [
        build_rule(f"R{i}", text, for_, "", "high", {}, "", 0.0, (), fraction)
        for i, (text, for_) in enumerate(ENGINE_RULES)
    ]
    logs: list[list[tuple[str, str, float]]] = [[], []]
    engines = [
        cls(
            rules,
            "h",
            None,
            lambda a, n: None,
            lambda e, log=log: log.append((e.fields["rule"], e.fields["state"], e.ts)),
        )
        for cls, log in ((AlertEngine, logs[0]), (PlainEngine, logs[1]))
    ]
    t = 1_790_000_000.0
    level = 0.0
    for i, (gap, v, late, _) in enumerate(data):
        t += gap
        # a walk that crosses the thresholds now and then, or jumps
        level = level * 0.9 + v / 1e4 if walk else v / 1e4
        for engine in engines:
            engine.observe([Metric("x", level, t, {})], t + late)
            if i % tick_every == 0:
                engine.tick(t + late + 1.0)
    assert logs[0] == logs[1]
