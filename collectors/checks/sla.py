"""Availability and latency percentiles of a check over rolling windows
(1 h, 24 h, 30 d), computed on the host and kept across restarts.

Windows. Each window is a row of time buckets aligned on UTC: 1 h in
1-minute buckets, 24 h in 15-minute buckets, 30 d in 1-day buckets. A
window holds the current bucket and the ones before it back to one
window's length, so "1h" means the current minute plus the 59 before it
(between 59 and 60 minutes of runs). A bucket counts runs and OK runs and
holds a latency sketch of its OK runs.

Sketch. Latencies fall in logarithmic bins: bin i holds (g^(i-1), g^i]
with g = (1 + a) / (1 - a), a = 1 %; a bin's value is its midpoint
2 g^i / (g + 1), within 1 % of every latency in it (the DDSketch idea).
A percentile is the bin of the run at rank ceil(q n) (nearest rank), so
it is within 1 % of the exact nearest-rank percentile of the same runs.

Cost. Each run adds to three open buckets and three window totals; a
bucket that closes is packed into an array (a few hundred bytes), and
one that leaves its window is subtracted from the totals. Percentiles
sort the window's bins (tens of them). Failed runs count against
availability but not in the latency percentiles: a timeout's "latency" is
the timeout.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Mapping
from typing import Any

ACCURACY = 0.01
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -(2**31)  # latencies of 0 (a clock that did not move)

# name -> (window seconds, bucket seconds)
WINDOWS: dict[str, tuple[float, float]] = {
    "1h": (3600.0, 60.0),
    "24h": (86400.0, 900.0),
    "30d": (30 * 86400.0, 86400.0),
}
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


class SLA:
    """One check's windows, run counters and last state."""

    def __init__(self) -> None:
        self.windows = {name: Window(*spec) for name, spec in WINDOWS.items()}
        self.runs = 0
        self.failures = 0
        self.last_ok: bool | None = None  # for transition events across restarts
        self.failing_since: float | None = None

    def add(self, ts: float, ok: bool, latency: float) -> None:
        self.runs += 1
        self.failures += not ok
        for window in self.windows.values():
            window.add(ts, ok, latency)

    def figures(self, now: float) -> dict[str, tuple[float | None, dict[float, float]]]:
        """window -> (availability, {quantile: latency seconds})."""
        out = {}
        for name, window in self.windows.items():
            window.expire(now)
            out[name] = (window.availability(), window.quantiles())
        return out

    def dump(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "failures": self.failures,
            "last_ok": self.last_ok,
            "failing_since": self.failing_since,
            "windows": {name: w.dump() for name, w in self.windows.items()},
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> SLA:
        sla = cls()
        sla.runs = int(data["runs"])
        sla.failures = int(data["failures"])
        sla.last_ok = data.get("last_ok")
        since = data.get("failing_since")
        sla.failing_since = float(since) if since is not None else None
        for name, rows in data.get("windows", {}).items():
            if name in WINDOWS:
                sla.windows[name] = Window.load(*WINDOWS[name], rows)
        return sla
