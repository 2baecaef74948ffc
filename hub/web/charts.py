"""Inline SVG charts, drawn on the server: a sparkline for the fleet table
and a line chart with axes for the host page. No script, no library.

Points are [ts, value] pairs; a value that is not finite (None, NaN,
infinity) is a gap, and so is a step in time over 2.5 times the series'
usual step (the host was silent): the line breaks there rather than
drawing a slope across the outage. A series of more points than the chart
has pixels is thinned to the largest and smallest value of each pixel
column, so spikes survive. Every label and tooltip is escaped."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from hub.web.render import DASH, esc, finite, number, utc

Points = Sequence[Sequence[float | None]]
COLOURS = 6  # CSS classes c0..c5


def _clean(points: Points) -> list[tuple[float, float | None]]:
    out = []
    for p in points:
        ts = finite(p[0]) if len(p) > 0 else None
        if ts is not None:
            out.append((ts, finite(p[1]) if len(p) > 1 else None))
    out.sort(key=lambda p: p[0])
    return out


def _segments(points: list[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Runs of finite values, broken at gaps."""
    steps = [b[0] - a[0] for a, b in itertools.pairwise(points) if b[0] > a[0]]
    usual = statistics.median(steps) if steps else 0.0
    runs: list[list[tuple[float, float]]] = [[]]
    last_ts = None
    for ts, value in points:
        broken = last_ts is not None and usual > 0 and ts - last_ts > 2.5 * usual
        if (value is None or broken) and runs[-1]:
            runs.append([])
        if value is not None:
            runs[-1].append((ts, value))
        last_ts = ts
    return [r for r in runs if r]


def _thin(
    run: list[tuple[float, float]], since: float, span: float, columns: int
) -> list[tuple[float, float]]:
    """At most two points (the lowest and the highest) per pixel column."""
    if len(run) <= 2 * columns:
        return run
    groups: dict[int, list[tuple[float, float]]] = {}
    for p in run:
        groups.setdefault(int((p[0] - since) / span * columns), []).append(p)
    out: list[tuple[float, float]] = []
    for group in groups.values():  # in time order: `run` is
        lo, hi = min(group, key=lambda q: q[1]), max(group, key=lambda q: q[1])
        out.extend(sorted({lo, hi}))
    return out


class Scale:
    """Values to pixels, safe for any finite floats (1e308 and -1e308
    together: the span is computed on halves, so it never overflows)."""

    def __init__(self, lo: float, hi: float, pixels: float) -> None:
        if hi <= lo:  # one value: it sits at the bottom
            hi = lo + (abs(lo) or 1.0)
        self.lo, self.half_span, self.pixels = lo, hi / 2 - lo / 2, pixels
        self.hi = hi

    def __call__(self, v: float) -> float:
        return (v / 2 - self.lo / 2) / self.half_span * self.pixels


def _path(runs: list[list[tuple[float, float]]], x: Scale, y: Scale, height: float) -> str:
    parts = []
    for run in runs:
        coords = [f"{x(t):.1f},{height - y(v):.1f}" for t, v in run]
        if len(coords) == 1:  # a lone point: a short dash, so it shows
            t, v = run[0]
            coords.append(f"{x(t) + 3:.1f},{height - y(v):.1f}")
        parts.append("M" + " L".join(coords))
    return " ".join(parts)


def sparkline(
    points: Points, since: float, until: float, width: int = 100, height: int = 22
) -> str:
    runs = _segments(_clean(points))
    if not runs:
        return f'<span class="none">{DASH}</span>'
    values = [v for run in runs for _, v in run]
    x = Scale(since, until, width)
    y = Scale(min(0.0, *values), max(100.0, *values), height - 2)
    count = sum(len(r) for r in runs)
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' data-points="{count}" role="img"><title>{esc(number(values[-1], "%"))} now,'
        f" max {esc(number(max(values), '%'))}</title>"
        f'<path d="{_path(runs, x, y, height - 1)}"/></svg>'
    )


def chart(
    title: str,
    series: Sequence[tuple[str, Points]],
    since: float,
    until: float,
    unit: str = "",
    floor: float | None = 0.0,
    ceiling: float | None = None,
    width: int = 560,
    height: int = 160,
) -> str:
    """A line chart of `series` ((label, points), ...) over [since, until]:
    the y axis from `floor` (None: the lowest value) to the highest value
    or `ceiling`, whichever is higher; a legend; each line with its label
    as a tooltip."""
    left, bottom = 52, 18
    plot_w, plot_h = width - left - 4, height - bottom - 6
    drawn = []
    for label, points in series:
        runs = _segments(_clean(points))
        if runs:
            drawn.append((label, runs))
    values = [v for _, runs in drawn for run in runs for _, v in run]
    head = f'<figure class="chart"><figcaption>{esc(title)}</figcaption>'
    if not values:
        return head + '<p class="none">no data in this range</p></figure>'
    lo = min(values) if floor is None else min(floor, *values)
    hi = max(values) if ceiling is None else max(ceiling, *values)
    x, y = Scale(since, until, plot_w), Scale(lo, hi, plot_h)
    lines, legend, total = [], [], 0
    for i, (label, runs) in enumerate(drawn):
        runs = [_thin(r, since, until - since or 1.0, plot_w) for r in runs]
        count = sum(len(r) for r in runs)
        total += count
        last = runs[-1][-1][1]
        tip = f"{label}: {number(last, unit)} (last), {count} points"
        lines.append(
            f'<path class="c{i % COLOURS}" data-points="{count}" d="{_path(runs, x, y, plot_h)}">'
            f"<title>{esc(tip)}</title></path>"
        )
        legend.append(
            f'<li class="c{i % COLOURS}">{esc(label)} <b>{esc(number(last, unit))}</b></li>'
        )
    return (
        f'{head}<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" data-points="{total}">'
        f'<text x="{left - 4}" y="10" class="axis" text-anchor="end">'
        f"{esc(number(y.hi, unit))}</text>"
        f'<text x="{left - 4}" y="{plot_h + 6}" class="axis" text-anchor="end">'
        f"{esc(number(y.lo, unit))}</text>"
        f'<text x="{left}" y="{height - 4}" class="axis">{esc(utc(since))}</text>'
        f'<text x="{width - 4}" y="{height - 4}" class="axis" text-anchor="end">'
        f"{esc(utc(until))}</text>"
        f'<g transform="translate({left},6)">'
        f'<rect class="frame" width="{plot_w}" height="{plot_h}"/>'
        + "".join(lines)
        + f'</g></svg><ul class="legend">{"".join(legend)}</ul></figure>'
    )
