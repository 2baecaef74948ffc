"""SLA figures over recorded series against a direct computation."""

from __future__ import annotations

import math
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.checks.sla import ACCURACY, SLA, WINDOWS, Window

T0 = 1_800_000_000.0  # a multiple of 86400: windows start on bucket edges


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def in_window(runs, name, now):
    """The runs a window holds at `now`, computed directly from its definition:
    the current bucket and the ones before it back to the window's length."""
    length, width = WINDOWS[name]
    oldest = math.floor(now / width) * width - length + width
    return [r for r in runs if oldest <= r[0] <= now]


def recorded(seed, n=2000, step=10.0, fail_rate=0.05):
    rnd = random.Random(seed)
    runs = []
    for i in range(n):
        ok = rnd.random() > fail_rate
        latency = rnd.lognormvariate(-3, 0.8)  # around 50 ms, a long tail
        runs.append((T0 + i * step, ok, latency))
    return runs


@pytest.mark.parametrize("seed", range(5))
def test_figures_match_a_direct_computation(seed):
    runs = recorded(seed, n=10_000, step=13.0)  # ~36 h: the 1h and 24h windows roll
    sla = SLA()
    for ts, ok, latency in runs:
        sla.add(ts, ok, latency)
    now = runs[-1][0]
    figures = sla.figures(now)
    for name in WINDOWS:
        held = in_window(runs, name, now)
        availability, quantiles = figures[name]
        assert availability == pytest.approx(sum(ok for _, ok, _ in held) / len(held), abs=1e-12)
        passed = [lat for _, ok, lat in held if ok]
        for q in (0.5, 0.95, 0.99):
            exact = nearest_rank(passed, q)
            assert quantiles[q] == pytest.approx(exact, rel=ACCURACY * 1.0001), (name, q)


def test_an_hour_window_forgets_what_is_older():
    sla = SLA()
    sla.add(T0, False, 1.0)
    for i in range(1, 361):
        sla.add(T0 + 10 * i, True, 0.1)
    availability, _ = sla.figures(T0 + 3600)["1h"]
    assert availability == 1.0  # the failure at T0 left the window
    assert sla.figures(T0 + 3600)["24h"][0] == pytest.approx(360 / 361)
    # and a window with no runs at all has no figure
    assert sla.figures(T0 + 3 * 86400)["1h"] == (None, {})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 4000), st.booleans(), st.floats(0, 30)), min_size=1, max_size=300
    )
)
def test_the_window_totals_equal_their_buckets(raw):
    """However runs arrive (gaps, bursts, zero latencies), a window's
    running totals are the sums of the buckets it still holds."""
    window = Window(*WINDOWS["1h"])
    t = T0
    for gap, ok, latency in raw:
        t += gap
        window.add(t, ok, latency)
        assert window.total == sum(b.total for b in window.buckets)
        assert window.ok == sum(b.ok for b in window.buckets)
        merged: dict[int, int] = {}
        for b in window.buckets:
            for k, c in b.histogram().items():
                merged[k] = merged.get(k, 0) + c
        assert window.bins == merged


def test_state_survives_a_round_trip():
    runs = recorded(1, n=3000)
    sla = SLA()
    for ts, ok, latency in runs:
        sla.add(ts, ok, latency)
    sla.last_ok, sla.failing_since = False, runs[-1][0]
    data = msgpack.unpackb(msgpack.packb(sla.dump()), raw=False, strict_map_key=False)
    back = SLA.load(data)
    now = runs[-1][0]
    assert back.figures(now) == sla.figures(now)
    assert (back.runs, back.failures, back.last_ok) == (sla.runs, sla.failures, False)
    back.add(now + 10, True, 0.05)  # and it carries on
    assert back.runs == sla.runs + 1
