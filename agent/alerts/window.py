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

Coverage. A window function evaluated on a few seconds of samples says
little about its window: a least-squares line through 40 s of a 1 h
window, read 24 h ahead, swings across any threshold with the noise. So
a window rule is evaluated only once the samples in its window span at
least `min_coverage` of it: (newest - oldest sample in the window) /
window. `Coverage` answers that in O(1) per sample: once a sample s with
s <= newest - need is in the window, the window stays covered until s
leaves it (at s + window), as the newest sample only moves forward; it
bisects again only then, about once per (window - need). `increase` and
`max_over_time` with > and `min_over_time` with < need none (GROWING). A
window holding
as many samples as the engine keeps (`enough`) counts as covered, so a
fast series trimmed to that many is not blinded. Coverage does not
change what a bound proves: a condition a bound calls false is false
whether or not the window is covered.

tests/agent/alerts/test_window.py checks all three against `evaluator`
(and, for coverage, a plain span computation), and an engine with bounds
against one without, on random series.
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
        "slope",
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
        self.slope: float | None = None  # of the last line fitted, if the sums gave it

    def __call__(self, ts: Sequence[float], values: Sequence[float], now: float) -> float | None:
        """predict_linear on the series at `now`, as `evaluator` gives it."""
        end = len(ts)
        if not end or ts[-1] > now or now < self.now:
            self.n = 0  # samples ahead of `now`, or time went back: rare
            self.slope = None
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
        self.slope = None
        if n < 2:
            return None
        mx, my = self.sx / n, self.sy / n
        var = self.sxx - self.sx * mx
        if var <= 0:
            return None
        slope = self.slope = (self.sxy - self.sx * my) / var
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


class Coverage:
    """Whether the samples in a (rule, series) window span at least `need`
    seconds (min_coverage x window), for the engine's hot path."""

    __slots__ = ("enough", "need", "proof", "until", "window")

    def __init__(self, window: float, fraction: float, enough: int) -> None:
        self.window = window
        self.need = window * fraction
        self.enough = enough
        # covered for any `now` before `until` while ts[-1] <= now and the
        # sample that proved it (`proof`) is still kept: a trim made at a
        # later `now` (the clock went back since) may have dropped it
        self.until = -math.inf
        self.proof = math.inf

    def __call__(self, ts: Sequence[float], now: float) -> bool:
        end = len(ts)
        if now < self.until and end and ts[-1] <= now and ts[0] <= self.proof:
            return True
        hi = bisect_right(ts, now)
        lo = bisect_right(ts, now - self.window, 0, hi)
        if lo == hi:
            return False
        if hi - lo >= self.enough:
            return True  # as many as are kept: a fast series trimmed by count
        # the newest sample at least `need` older than the newest in the window
        j = bisect_right(ts, ts[hi - 1] - self.need, lo, hi)
        if j == lo:
            return False
        if hi == end:
            self.proof = ts[j - 1]
            self.until = self.proof + self.window
        return True

    def empty(self, ts: Sequence[float], now: float) -> bool:
        """No sample in the window at all (the series is stale)."""
        hi = bisect_right(ts, now)
        return not hi or ts[hi - 1] <= now - self.window


# Shapes whose value on part of a window can only move further past the
# threshold as the rest of the window fills: the increase seen so far, the
# largest or smallest value seen so far. True on part of the window is true
# of all of it, so they need no coverage, and a counter that appears with
# its first event (a log rule's first match) is judged at once.
GROWING = {
    "increase": (">", ">="),
    "max_over_time": (">", ">="),
    "min_over_time": ("<", "<="),
}


def coverage(expr: Expr, fraction: float, enough: int) -> Coverage | None:
    """The rule's Coverage, or None where it does not apply: a plain
    selector, absent(), a GROWING shape, or min_coverage 0."""
    if expr.func in (None, "absent") or expr.window is None or fraction <= 0:
        return None
    if expr.op in GROWING.get(expr.func, ()):
        return None
    return Coverage(expr.window, fraction, enough)


def covered_fraction(ts: Sequence[float], now: float, window: float) -> float:
    """(newest - oldest sample in the window) / window: 0 for an empty one."""
    hi = bisect_right(ts, now)
    lo = bisect_right(ts, now - window, 0, hi)
    return (ts[hi - 1] - ts[lo]) / window if lo < hi else 0.0
