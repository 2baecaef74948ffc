"""The engine's shortcuts against the plain evaluator: RunningFit gives the
same predict_linear, and a Bound never calls a true condition false."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerts.expr import evaluator, parse
from agent.alerts.window import RunningFit, bound

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
    for ts, values, now in replay(data):
        want, got = exact(ts, values, now), fit(ts, values, now)
        if want is None:
            assert got is None
        else:
            assert got is not None
            assert math.isclose(got, want, rel_tol=1e-7, abs_tol=slack)


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
@given(data=steps, counter=st.booleans(), nan_at=st.integers(-1, 150))
def test_a_bound_never_calls_a_true_condition_false(text, data, counter, nan_at):
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

    for i, (ts, values, now) in enumerate(replay(data, counter_value if counter else float)):
        if i == nan_at:
            values[-1] = math.nan
        quiet = gate.quiet(ts, values, now) or gate.tighten(ts, values, now)
        value = exact(ts, values, now)
        if quiet:
            assert value is None or not gate.test(value, expr.threshold), (i, value)


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
