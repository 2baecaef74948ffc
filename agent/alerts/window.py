"""Cheaper evaluation for the engine's hot path, which runs for every
sample of every series a rule selects: a running fit for predict_linear,
and bounds that prove a quiet series' condition false without evaluating.

Running fit. `evaluator` fits predict_linear from scratch: four passes
over the window, about 20 us for 90 samples in CPython. `RunningFit`
keeps the least-squares sums for one (rule, series) pair and at each call
adds the samples that arrived and removes those that left the window,
usually one of each: O(1) per sample. It remembers samples by timestamp
(a series' timestamps strictly increase), so the engine may trim the
arrays' front between calls; if a sample it still counts was trimmed, or
time went back, it starts afresh. Each add and remove rounds, so after as
many updates as the window holds samples the sums are recomputed; they
are taken about an anchor inside the window, so they stay small. The
result equals `evaluator`'s to about 1e-9 relative. (Running sums for
avg_over_time or increase cost about what summing 30-60 samples in C
does, so those keep `evaluator`.)

Bounds. Most series sit far from their rules' thresholds, and for them
the engine only needs to know that the condition is still false.
`avg_over_time(x[w]) > T` cannot hold while every sample in the window is
<= T, and the window's maximum can only fall as samples leave it. So a
`Bound` keeps an upper bound of that maximum (the last computed maximum,
raised by each new sample): while the bound is <= T the rule is false
without looking at the window. The same holds for max_over_time with >,
for min and avg_over_time with < (a lower bound of the minimum), for
increase with > (a counter's steps are never negative, so the increase
only grows by new steps) and for rate with > (the window's rate, the sum
of steps over the sum of gaps, is at most its largest step / gap). Each
new sample goes through `quiet`; when the bound no longer proves the
condition false, `tighten` recomputes it from the window. A series with a
pending or firing instance is always evaluated.

tests/agent/alerts/test_window.py checks both against `evaluator` and an
engine without them on random series.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

from agent.alerts.expr import COMPARE, Evaluator, Expr, evaluator

MIN_REFIT_EVERY = 16  # updates between refits, for windows of few samples


class RunningFit:
    """predict_linear for one (rule, series) pair: the least-squares sums
    about an anchor (x0, y0) inside the window."""

    __slots__ = (
        "ahead",
        "exact",
        "first",
        "last",
        "n",
        "now",
        "sx",
        "sxx",
        "sxy",
        "sy",
        "updates",
        "window",
        "x0",
        "y0",
    )

    def __init__(self, expr: Expr) -> None:
        assert expr.func == "predict_linear" and expr.window is not None
        self.window = expr.window
        self.ahead = expr.arg or 0.0
        self.exact = evaluator(expr)  # for what the sums cannot follow
        self.now = -math.inf
        self.n = self.updates = 0
        self.first = self.last = 0.0  # timestamps of the oldest and newest samples summed
        self.x0 = self.y0 = 0.0
        self.sx = self.sy = self.sxx = self.sxy = 0.0

    def __call__(self, ts: Sequence[float], values: Sequence[float], now: float) -> float | None:
        """predict_linear on the series at `now`, as `evaluator` gives it."""
        end = len(ts)
        if not end or ts[-1] > now or now < self.now:
            self.n = 0  # samples ahead of `now`, or time went back: rare
            return self.exact(ts, values, now)
        self.now = now
        cutoff = now - self.window
        lo = bisect_left(ts, self.first) if self.n else end
        if lo == end or ts[lo] != self.first or self.updates >= max(self.n, MIN_REFIT_EVERY):
            self._refit(ts, values, bisect_right(ts, cutoff))  # trimmed under us, or due
        else:
            # written out, not in helpers: this runs for every sample
            x0, y0 = self.x0, self.y0
            n, sx, sy, sxx, sxy = self.n, self.sx, self.sy, self.sxx, self.sxy
            start = bisect_right(ts, self.last, lo)
            for i in range(start, end):  # what arrived
                x, y = ts[i] - x0, values[i] - y0
                n += 1
                sx += x
                sy += y
                sxx += x * x
                sxy += x * y
            self.updates += end - start
            while lo < end and ts[lo] <= cutoff:  # what left the window
                x, y = ts[lo] - x0, values[lo] - y0
                n -= 1
                sx -= x
                sy -= y
                sxx -= x * x
                sxy -= x * y
                lo += 1
                self.updates += 1
            self.n, self.sx, self.sy, self.sxx, self.sxy = n, sx, sy, sxx, sxy
            if n:
                self.first, self.last = ts[lo], ts[-1]
        n = self.n
        if n < 2:
            return None
        mx, my = self.sx / n, self.sy / n
        var = self.sxx - self.sx * mx
        if var <= 0:
            return None
        slope = (self.sxy - self.sx * my) / var
        return float(self.y0 + my + slope * ((now - self.x0) - mx + self.ahead))

    def _refit(self, ts: Sequence[float], values: Sequence[float], lo: int) -> None:
        end = len(ts)
        self.n, self.updates = end - lo, 0
        if lo == end:
            return
        x0 = self.x0 = ts[lo]
        y0 = self.y0 = values[lo]
        sx = sy = sxx = sxy = 0.0
        for i in range(lo, end):
            x, y = ts[i] - x0, values[i] - y0
            sx += x
            sy += y
            sxx += x * x
            sxy += x * y
        self.sx, self.sy, self.sxx, self.sxy = sx, sy, sxx, sxy
        self.first, self.last = ts[lo], ts[-1]


def series_evaluator(expr: Expr) -> Evaluator:
    """What the engine calls for one (rule, series) pair: predict_linear
    gets a running fit of its own, the rest share the pure evaluator."""
    return RunningFit(expr) if expr.func == "predict_linear" else evaluator(expr)


def _counter(values: Sequence[float]) -> bool:
    """No negative or NaN value (min() would pass over a NaN)."""
    return all(map((0.0).__le__, values))


def _step(before: float, after: float) -> float:
    """A counter's step between two samples; a drop is a restart from 0."""
    return after - before if after >= before else after


class Bound:
    """A bound on a window function that can prove `func(...) op threshold`
    false. `absorb` takes the newest sample (the arrays' last), `exact`
    recomputes the bound from the window."""

    __slots__ = ("now", "test", "threshold", "value")

    def __init__(self, expr: Expr) -> None:
        self.test: Callable[[float, float], bool] = COMPARE[expr.op]
        self.threshold = expr.threshold
        self.value = math.nan  # unknown: proves nothing until computed
        self.now = -math.inf  # when it was last computed

    def quiet(self, ts: Sequence[float], values: Sequence[float], now: float) -> bool:
        """Take the new sample; True if the condition is surely false now."""
        self.absorb(ts, values)
        # evaluated earlier than the bound was computed (the clock went
        # back): the window reaches older samples than the bound knows
        return now >= self.now and not self.test(self.value, self.threshold)

    def tighten(self, ts: Sequence[float], values: Sequence[float], now: float) -> bool:
        """Recompute the bound from the window; True if that proves the
        condition false."""
        self.value = self.exact(ts, values, now)
        self.now = now
        return not self.test(self.value, self.threshold)

    def absorb(self, ts: Sequence[float], values: Sequence[float]) -> None:
        raise NotImplementedError

    def exact(self, ts: Sequence[float], values: Sequence[float], now: float) -> float:
        raise NotImplementedError


# Bounds are kept so that an unknown or NaN state makes `test` fail the
# other way: +inf for an upper bound (nothing proven for "> T"), -inf for a
# lower one. A NaN sample resets to that state.


class UpperExtreme(Bound):
    """avg_over_time and max_over_time with > or >=: the window's maximum
    bounds both, and can only fall as samples leave."""

    __slots__ = ("maximum",)

    def __init__(self, expr: Expr) -> None:
        super().__init__(expr)
        self.value = math.inf
        self.maximum = evaluator(dataclasses.replace(expr, func="max_over_time"))

    def absorb(self, ts: Sequence[float], values: Sequence[float]) -> None:
        sample = values[-1]
        if not sample <= self.value:  # larger, or NaN
            self.value = sample if sample == sample else math.inf

    def exact(self, ts: Sequence[float], values: Sequence[float], now: float) -> float:
        top = self.maximum(ts, values, now)
        if top is None:
            return -math.inf  # an empty window
        return top if top == top else math.inf


class LowerExtreme(Bound):
    """avg_over_time and min_over_time with < or <=: the mirror image."""

    __slots__ = ("minimum",)

    def __init__(self, expr: Expr) -> None:
        super().__init__(expr)
        self.value = -math.inf
        self.minimum = evaluator(dataclasses.replace(expr, func="min_over_time"))

    def absorb(self, ts: Sequence[float], values: Sequence[float]) -> None:
        sample = values[-1]
        if not sample >= self.value:
            self.value = sample if sample == sample else -math.inf

    def exact(self, ts: Sequence[float], values: Sequence[float], now: float) -> float:
        low = self.minimum(ts, values, now)
        if low is None:
            return math.inf
        return low if low == low else -math.inf


class _UpperCounter(Bound):
    """A counter's bounds: the steps between samples are never negative
    while the counter is; a negative or NaN sample voids the bound until it
    has left the window."""

    __slots__ = ("window",)

    def __init__(self, expr: Expr) -> None:
        super().__init__(expr)
        self.value = math.inf
        self.window = expr.window or 0.0

    def absorb(self, ts: Sequence[float], values: Sequence[float]) -> None:
        sample = values[-1]
        if not sample >= 0:
            self.value = math.inf
        elif len(values) > 1:
            self.grow(ts, _step(values[-2], sample))

    def grow(self, ts: Sequence[float], step: float) -> None:
        raise NotImplementedError


class UpperIncrease(_UpperCounter):
    """increase with > or >=: the window's increase only grows by new steps."""

    __slots__ = ("increase",)

    def __init__(self, expr: Expr) -> None:
        super().__init__(expr)
        self.increase = evaluator(expr)

    def grow(self, ts: Sequence[float], step: float) -> None:
        self.value += step

    def exact(self, ts: Sequence[float], values: Sequence[float], now: float) -> float:
        lo = bisect_right(ts, now - self.window)
        if not _counter(values[lo:]):
            return math.inf
        return self.increase(ts, values, now) or 0.0


class UpperRate(_UpperCounter):
    """rate with > or >=: the rate over the window, (sum of steps) / (sum
    of the gaps between samples), is at most the largest step / gap, and
    new samples can only add steps."""

    __slots__ = ()

    def grow(self, ts: Sequence[float], step: float) -> None:
        self.value = max(self.value, step / (ts[-1] - ts[-2]))

    def exact(self, ts: Sequence[float], values: Sequence[float], now: float) -> float:
        lo = bisect_right(ts, now - self.window)
        w, t = values[lo:], ts[lo:]
        if len(w) < 2:
            return 0.0
        if not _counter(w):
            return math.inf
        # in C: steps between neighbours (a drop restarts from 0), over the gaps
        steps = list(map(operator.sub, w[1:], w[:-1]))
        if min(steps) < 0:
            steps = [_step(a, b) for a, b in itertools.pairwise(w)]
        return float(max(map(operator.truediv, steps, map(operator.sub, t[1:], t[:-1]))))


def bound(expr: Expr) -> Bound | None:
    """A Bound for the rule, if its function and comparison allow one."""
    up = expr.op in (">", ">=")
    if expr.func in ("avg_over_time", "max_over_time") and up:
        return UpperExtreme(expr)
    if expr.func in ("avg_over_time", "min_over_time") and expr.op in ("<", "<="):
        return LowerExtreme(expr)
    if expr.func == "increase" and up:
        return UpperIncrease(expr)
    if expr.func == "rate" and up:
        return UpperRate(expr)
    return None
