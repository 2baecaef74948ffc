"""A latency sketch over a sliding window, within 1 % at every quantile.

Values fall in logarithmic bins: bin i holds (g^(i-1), g^i] with
g = (1 + a) / (1 - a), a = 1 %; a bin's value is its midpoint
2 g^i / (g + 1), within 1 % of every value in it (the DDSketch idea:
Masson, Rim and Lee, VLDB 2019). A quantile is the bin of the value at rank
ceil(q n) (nearest rank), so it is within 1 % of the exact nearest-rank
quantile of the same values.

A `Window` is a row of time buckets `width` wide back to `length`: the
current bucket and the ones before it. Each bucket counts its values (and,
for checks, its failed runs, which have no latency) and holds the bins of
its values; a bucket that closes is packed into an array (a few hundred
bytes), and one that leaves the window is subtracted from the totals.
Quantiles sort the window's bins (tens of them).

Used by the checks' SLA windows (collectors/checks/sla.py) and the access
logs' request durations (collectors/logs/access.py). The DDSketch library
(`ddsketch`) has the same bins but no time buckets to slide or pack and
persist; these 150 lines cost less than it and `six`.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Any

ACCURACY = 0.01
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -(2**31)  # latencies of 0 (a clock that did not move)

QUANTILES = (0.5, 0.95, 0.99)


def bin_of(latency: float) -> int:
    if latency <= 0:
        return ZERO_BIN
    return math.ceil(math.log(latency) / _LOG_GAMMA)


def value_of(b: int) -> float:
    if b == ZERO_BIN:
        return 0.0
    return 2 * GAMMA**b / (GAMMA + 1)


class Bucket:
    """Runs in one time bucket. Open: a dict of bins; closed: packed."""

    __slots__ = ("base", "bins", "counts", "ok", "start", "total")

    def __init__(self, start: float, total: int = 0, ok: int = 0) -> None:
        self.start = start
        self.total = total
        self.ok = ok
        self.bins: dict[int, int] | None = {}
        self.base = 0  # packed: counts[i] is bin base + i
        self.counts: array[int] | None = None

    def histogram(self) -> dict[int, int]:
        if self.bins is not None:
            return self.bins
        assert self.counts is not None
        return {self.base + i: c for i, c in enumerate(self.counts) if c}

    def pack(self) -> None:
        bins = self.bins or {}
        if bins and ZERO_BIN not in bins:
            self.base = min(bins)
            counts = array("I", bytes(4 * (max(bins) - self.base + 1)))
            for b, c in bins.items():
                counts[b - self.base] = c
            self.counts = counts
            self.bins = None
        # an empty bucket, or one with zero latencies (rare), stays a dict


class Window:
    def __init__(self, length: float, width: float) -> None:
        self.length = length
        self.width = width
        self.buckets: deque[Bucket] = deque()
        self.total = 0
        self.ok = 0
        self.bins: dict[int, int] = {}  # the sum of the buckets' histograms

    def add(self, ts: float, ok: bool, latency: float) -> None:
        start = math.floor(ts / self.width) * self.width
        if not self.buckets or start > self.buckets[-1].start:
            if self.buckets:
                self.buckets[-1].pack()
            self.buckets.append(Bucket(start))
        # a run stamped before the open bucket (the clock went back) is
        # counted in the open one rather than lost
        bucket = self.buckets[-1]
        bucket.total += 1
        self.total += 1
        if ok:
            b = bin_of(latency)
            bucket.ok += 1
            self.ok += 1
            assert bucket.bins is not None
            bucket.bins[b] = bucket.bins.get(b, 0) + 1
            self.bins[b] = self.bins.get(b, 0) + 1
        self.expire(ts)

    def expire(self, now: float) -> None:
        """Drop the buckets that left the window."""
        oldest = math.floor(now / self.width) * self.width - self.length + self.width
        while self.buckets and self.buckets[0].start < oldest:
            gone = self.buckets.popleft()
            self.total -= gone.total
            self.ok -= gone.ok
            for b, c in gone.histogram().items():
                left = self.bins[b] - c
                if left:
                    self.bins[b] = left
                else:
                    del self.bins[b]

    def availability(self) -> float | None:
        return self.ok / self.total if self.total else None

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
        """Nearest-rank percentiles of the OK runs' latencies, within 1 %."""
        n = self.ok
        if not n:
            return {}
        out: dict[float, float] = {}
        ranks = sorted((max(1, math.ceil(q * n)), q) for q in qs)
        seen, i = 0, 0
        for b in sorted(self.bins):
            seen += self.bins[b]
            while i < len(ranks) and ranks[i][0] <= seen:
                out[ranks[i][1]] = value_of(b)
                i += 1
        return out

    # -- persistence ---------------------------------------------------------------

    def dump(self) -> list[Any]:
        return [[b.start, b.total, b.ok, list(b.histogram().items())] for b in self.buckets]

    @classmethod
    def load(cls, length: float, width: float, rows: list[Any]) -> Window:
        w = cls(length, width)
        for start, total, ok, bins in rows:
            bucket = Bucket(float(start), int(total), int(ok))
            bucket.bins = {int(b): int(c) for b, c in bins}
            if w.buckets and bucket.start <= w.buckets[-1].start:
                raise ValueError("buckets out of order")
            w.buckets.append(bucket)
            w.total += bucket.total
            w.ok += bucket.ok
            for b, c in bucket.bins.items():
                w.bins[b] = w.bins.get(b, 0) + c
        for bucket in list(w.buckets)[:-1]:
            bucket.pack()
        return w
