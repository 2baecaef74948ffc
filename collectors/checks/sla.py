"""Availability and latency percentiles of a check over rolling windows
(1 h, 24 h, 30 d), computed on the host and kept across restarts.

Windows. Each window is a row of time buckets aligned on UTC: 1 h in
1-minute buckets, 24 h in 15-minute buckets, 30 d in 1-day buckets. A
window holds the current bucket and the ones before it back to one
window's length, so "1h" means the current minute plus the 59 before it
(between 59 and 60 minutes of runs). A bucket counts runs and OK runs and
holds a latency sketch of its OK runs.

The sketch, its 1 % accuracy and its cost: agent/core/sketch.py. Failed
runs count against availability but not in the latency percentiles: a
timeout's "latency" is the timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.core.sketch import ACCURACY, QUANTILES, Window  # noqa: F401 - re-exported

# name -> (window seconds, bucket seconds)
WINDOWS: dict[str, tuple[float, float]] = {
    "1h": (3600.0, 60.0),
    "24h": (86400.0, 900.0),
    "30d": (30 * 86400.0, 86400.0),
}


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
