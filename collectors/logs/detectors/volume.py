"""Log volume spikes (`volume`): lines per minute of each file against a
learned baseline (the design is `VolumeDetector`'s docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.core.schema import Duration, opt
from collectors.logs.detectors.base import DETECTORS, Detector, Finding


@dataclass(frozen=True, kw_only=True)
class VolumeOptions:
    volume_factor: float = opt(3.0, min=1.0)  # a minute this many times the baseline is a spike
    volume_min_lines: int = opt(100, min=1)  # and at least this many lines
    volume_learn: Duration = opt(1800.0, min=60.0)  # history needed before judging


_MAX_LEARNED = 2**31


@dataclass
class _Volume:
    minute: int  # the open minute (whole minutes since the epoch)
    count: int = 0  # lines in the open minute so far
    mean: float = 0.0  # baseline: EWMA of closed minutes
    var: float = 0.0  # exponentially weighted variance around it
    learned: int = 0  # closed minutes in the baseline
    reported: bool = False  # the open minute already gave a finding
    partial: bool = True  # the open minute is neither learned nor reported
    resumed: bool = False  # restored: the time since the snapshot is unknown


@DETECTORS.register("volume")
class VolumeDetector(Detector):
    """Log volume spikes: lines per minute of one file against a learned baseline.

    Lines are counted in whole-minute buckets by `now // 60`. A minute closes
    when an observation of a later minute arrives; minutes with no
    observation in between count as zero lines. The baseline is an
    exponentially weighted mean and variance of closed minutes, with weight
    `alpha = 2 / (learn_minutes + 1)` (the mean of all closed minutes while
    there are fewer than `1 / alpha`).

    Rule: the open minute is a spike as soon as its count so far satisfies
    all of
        - at least `learn_minutes` closed minutes are in the baseline,
        - count >= min_lines,
        - count > factor * mean, and
        - count > mean + DEVIATIONS * stddev (so a normally bursty file needs
          more than `factor` times its mean),
    and it gives one finding (the count is the one at detection, so at least
    the threshold); the minute is not reported again. A spiking minute is
    learned clipped to that threshold, so a lasting new level is learned
    gradually while one burst does not blind the detector.

    The first minute of a file, and the first minute after `restore()`, are
    neither learned nor reported: they are partial and may hold a backlog
    read at start. After a restore the minutes the agent was down are not
    learned as zeros either. If the clock goes back, lines count in the open
    minute. Memory is a few numbers per file, for at most `max_files` files
    (least recently observed evicted).
    """

    Options = VolumeOptions
    takes = "reads"
    DEVIATIONS = 4.0
    SNAPSHOT_VERSION = 1

    def __init__(
        self,
        factor: float = 3.0,
        min_lines: int = 100,
        learn_minutes: int = 30,
        *,
        max_files: int = 4096,
    ) -> None:
        if factor <= 0 or min_lines < 0 or learn_minutes < 0 or max_files < 1:
            raise ValueError(
                "factor must be positive, min_lines and learn_minutes >= 0, max_files >= 1"
            )
        self.factor = factor
        self.min_lines = min_lines
        self.learn_minutes = learn_minutes
        self.max_files = max_files
        self.alpha = min(1.0, 2.0 / (learn_minutes + 1))
        # past this many zero minutes the old baseline weighs less than e**-20
        self._idle_cap = int(20 / self.alpha) + 1
        self._files: dict[str, _Volume] = {}

    @classmethod
    def configured(cls, options: VolumeOptions, state: Any) -> VolumeDetector:
        args = (options.volume_factor, options.volume_min_lines, int(options.volume_learn // 60))
        return cls.restore(state, *args) if state else cls(*args)

    def observe(self, file: str, lines: int, now: float) -> list[Finding]:
        """Count `lines` read from `file` since the last call."""
        minute = int(now // 60)
        state = self._files.pop(file, None)
        if state is None:
            state = _Volume(minute=minute)
        self._files[file] = state
        while len(self._files) > self.max_files:
            del self._files[next(iter(self._files))]
        if state.resumed:
            state.resumed = False
            if minute > state.minute:  # the minutes the agent was down are unknown
                state.minute, state.count, state.reported = minute, 0, False
        elif minute > state.minute:
            self._close(state, minute)
        state.count += lines
        if state.reported or state.partial:
            return []
        threshold = self._threshold(state)
        if threshold is None or state.count < self.min_lines or state.count <= threshold:
            return []
        state.reported = True
        return [
            Finding(
                detector="volume",
                severity="medium",
                message=(
                    f"log volume spike in {file}: {state.count} lines this minute, "
                    f"baseline {state.mean:.1f}"
                ),
                fields={
                    "file": file,
                    "lines_per_minute": state.count,
                    "baseline": round(state.mean, 3),
                    "minute": state.minute * 60,
                },
            )
        ]

    def _threshold(self, state: _Volume) -> float | None:
        if state.learned < self.learn_minutes:
            return None
        std = math.sqrt(max(state.var, 0.0))
        return max(self.factor * state.mean, state.mean + self.DEVIATIONS * std)

    def _close(self, state: _Volume, minute: int) -> None:
        if not state.partial:
            threshold = self._threshold(state)
            count = float(state.count)
            self._learn(state, count if threshold is None else min(count, threshold))
        idle = minute - state.minute - 1
        for _ in range(min(idle, self._idle_cap)):
            self._learn(state, 0.0)
        if idle > self._idle_cap:
            state.learned = min(state.learned + idle - self._idle_cap, _MAX_LEARNED)
        state.minute = minute
        state.count = 0
        state.reported = False
        state.partial = False

    def _learn(self, state: _Volume, value: float) -> None:
        state.learned = min(state.learned + 1, _MAX_LEARNED)
        alpha = max(self.alpha, 1.0 / state.learned)
        diff = value - state.mean
        incr = alpha * diff
        state.mean += incr
        state.var = (1.0 - alpha) * (state.var + diff * incr)

    def baseline(self, file: str) -> float | None:
        """The learned lines per minute of `file` (None if not seen)."""
        state = self._files.get(file)
        return None if state is None else state.mean

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.SNAPSHOT_VERSION,
            "files": [
                [f, s.minute, s.count, s.mean, s.var, s.learned, s.reported]
                for f, s in self._files.items()
            ],
        }

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        factor: float = 3.0,
        min_lines: int = 100,
        learn_minutes: int = 30,
        **kwargs: Any,
    ) -> VolumeDetector:
        """A detector from `snapshot()`'s dict; a fresh one if it cannot be read."""
        det = cls(factor, min_lines, learn_minutes, **kwargs)
        try:
            if data.get("version") != cls.SNAPSHOT_VERSION:
                return det
            for f, minute, count, mean, var, learned, reported in data["files"]:
                det._files[str(f)] = _Volume(
                    minute=int(minute),
                    count=int(count),
                    mean=float(mean),
                    var=float(var),
                    learned=int(learned),
                    reported=bool(reported),
                    partial=True,
                    resumed=True,
                )
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls(factor, min_lines, learn_minutes, **kwargs)
        while len(det._files) > det.max_files:
            del det._files[next(iter(det._files))]
        return det
