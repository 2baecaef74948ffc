"""Check availability from what the hub stored: per (host, check) over a
window, the share of passing runs against the check's target, the error
budget left over 30 days, and the p95 latency of the passing runs. The
daily report (hub/reports/) and the web page's checks page use it.

Where the figures come from (docs/hub.md, "Reports"):

- runs and passing runs: the `check_up` rollups (every run sends
  `check_up` 1 or 0, collectors/checks/runner.py; a 5-minute rollup holds
  the count and the sum of its points, so passing / runs is exact). A
  window is taken in whole 5-minute buckets: its ends are rounded down to
  a multiple of 5 minutes (UTC-aligned, so local midnights in every real
  time zone are bucket edges). Why not the `check` events: a 30-day
  window of a fleet's runs is tens of millions of event bodies to read,
  against one rollup row per check per 5 minutes (bench/hub_report.py
  measures both).
- p95 latency: of the passing runs stamped in the window, from their
  `check` events (a rollup keeps no distribution); nearest rank, exact.
- target: the check's label `availability_target` when it has one (e.g.
  `labels = { availability_target = "0.995" }` on the agent's check, or
  "99.5%"), a number strictly between 0 and 1; else the default given.
- error budget left over the 30 days that end with the window:
  1 - (1 - availability_30d) / (1 - target). 1 is untouched, 0 spent,
  negative overspent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hub.store import Reader, bucket

DEFAULT_TARGET = 0.999
BUDGET_WINDOW = 30 * 86400.0
TARGET_LABEL = "availability_target"
DIGITS = 6  # figures are rounded to this many decimals: 0.99, not 0.9899999999999999


@dataclass(frozen=True)
class CheckSLA:
    """One check of one host over a window."""

    host: str
    check: str
    runs: int  # in the window
    passing: int
    availability: float | None  # passing / runs; None without runs
    target: float
    error_budget_left: float | None  # over BUDGET_WINDOW ending with the window
    p95_latency_seconds: float | None  # of the passing runs; None without any

    def to_dict(self) -> dict[str, Any]:
        """The report's "checks" item (issue 14's shape), plus runs and passing."""
        return {
            "host": self.host,
            "check": self.check,
            "availability": self.availability,
            "target": self.target,
            "error_budget_left": self.error_budget_left,
            "p95_latency_seconds": self.p95_latency_seconds,
            "runs": self.runs,
            "passing": self.passing,
        }


def parse_target(text: object) -> float | None:
    """A target from a label: "0.995" or "99.5%"; None if it is not one
    strictly between 0 and 1."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        return None
    if percent:
        value /= 100
    return value if 0 < value < 1 else None


def budget_left(availability: float, target: float) -> float:
    """1 - (1 - availability) / (1 - target); target strictly below 1."""
    return 1 - (1 - availability) / (1 - target)


def p95(sorted_values: list[float]) -> float | None:
    """The nearest-rank 95th percentile of ascending values."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(0.95 * len(sorted_values)) - 1)]


def _totals(
    reader: Reader, start: float, end: float
) -> dict[tuple[str, str], tuple[int, float, float | None]]:
    """(host, check) -> (runs, passing, target from its labels), over the
    whole buckets in [start, end). Series of one check (labels changed) add
    up; the target of the last one that names one wins."""
    out: dict[tuple[str, str], tuple[int, float, float | None]] = {}
    for host, labels_json, runs, passing in reader.check_totals(bucket(start), bucket(end)):
        try:
            labels = json.loads(labels_json)
        except ValueError:
            continue
        check = labels.get("check") if isinstance(labels, dict) else None
        if not isinstance(check, str):
            continue
        target = parse_target(labels.get(TARGET_LABEL))
        had_runs, had_passing, had_target = out.get((host, check), (0, 0.0, None))
        out[(host, check)] = (
            had_runs + runs,
            had_passing + passing,
            target if target is not None else had_target,
        )
    return out


def _latencies(reader: Reader, start: float, end: float) -> dict[tuple[str, str], float | None]:
    out: dict[tuple[str, str], float | None] = {}
    key: tuple[str, str] | None = None
    values: list[float] = []
    for host, check, latency in reader.check_latencies(start, end):
        if (host, check) != key:
            if key is not None:
                out[key] = p95(values)
            key, values = (host, check), []
        values.append(latency)
    if key is not None:
        out[key] = p95(values)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def checks(
    reader: Reader,
    start: float,
    end: float,
    target: float = DEFAULT_TARGET,
    hosts: Iterable[str] | None = None,
) -> list[CheckSLA]:
    """Every check with runs in [start, end) (Unix seconds; rounded down to
    5 minutes), by host and check: its availability there, its target
    (its `availability_target` label, else `target`), the error budget left
    over the 30 days ending at `end`, and the p95 latency of its passing
    runs in [start, end). `hosts`: only these. Runs on a read thread (the
    reader's); cost: one rollup row per check per 5 minutes of the 30
    days, and the window's check events."""
    if not 0 < target < 1:
        raise ValueError(f"target must be strictly between 0 and 1, not {target!r}")
    wanted = set(hosts) if hosts is not None else None
    window = _totals(reader, start, end)
    if wanted is not None:
        window = {k: v for k, v in window.items() if k[0] in wanted}
    if not window:
        return []
    month = _totals(reader, end - BUDGET_WINDOW, end)
    latency = _latencies(reader, bucket(start), bucket(end))
    out = []
    for (host, check), (runs, passing, own_target) in sorted(window.items()):
        if runs <= 0:
            continue
        goal = own_target if own_target is not None else target
        month_runs, month_passing, _ = month.get((host, check), (runs, passing, None))
        left = budget_left(month_passing / month_runs, goal) if month_runs > 0 else None
        out.append(
            CheckSLA(
                host,
                check,
                runs,
                round(passing),
                _round(passing / runs),
                goal,
                _round(left),
                _round(latency.get((host, check))),
            )
        )
    return out
