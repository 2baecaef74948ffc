"""Per-second rates from monotonically increasing counters.

Kernel counters can go backwards: a 32-bit counter wraps, a device or
interface is removed and re-created, a driver is reloaded, a CPU goes
offline. A decrease cannot be told apart from a reset reliably, so a
decrease gives no rate for that one interval (never a negative or absurd
value) and the next interval measures from the new value. A series that
vanishes is forgotten; one that appears gives its first rate one interval
later.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


class RateTracker:
    def __init__(self) -> None:
        self._prev: dict[Hashable, float] = {}
        self._prev_mono: float | None = None

    def step(self, mono: float, values: Mapping[Hashable, float]) -> dict[Hashable, float]:
        """Record `values` seen at monotonic time `mono`; return the rates known now."""
        prev, prev_mono = self._prev, self._prev_mono
        self._prev, self._prev_mono = dict(values), mono
        if prev_mono is None or mono <= prev_mono:
            return {}
        dt = mono - prev_mono
        rates: dict[Hashable, float] = {}
        for key, value in values.items():
            before = prev.get(key)
            if before is not None and value >= before:
                rates[key] = (value - before) / dt
        return rates
