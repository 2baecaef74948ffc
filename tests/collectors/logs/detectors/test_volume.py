"""The volume-spike detector, minute by minute."""

from __future__ import annotations

import json

import pytest

from collectors.logs.detectors.base import Finding
from collectors.logs.detectors.volume import VolumeDetector


def steady(det: VolumeDetector, minutes: int, per_minute: int, start: float = 0.0) -> float:
    """Feed `per_minute` lines a minute in six reads; return the next minute's start."""
    t = start
    for _ in range(minutes):
        for k in range(6):
            assert (
                det.observe("app.log", per_minute // 6 + (per_minute % 6 if k == 0 else 0), t) == []
            )
            t += 10.0
    return t


def test_volume_spike_after_learning() -> None:
    det = VolumeDetector(factor=3.0, min_lines=100, learn_minutes=30)
    t = steady(det, 40, 50)
    findings: list[Finding] = []
    for k in range(10):
        findings += det.observe("app.log", 50, t + 5 * k)
    (finding,) = findings
    assert finding.detector == "volume"
    assert finding.severity == "medium"
    assert finding.fields["file"] == "app.log"
    assert finding.fields["lines_per_minute"] > 150
    assert finding.fields["baseline"] == pytest.approx(50.0)
    # back to normal: no more findings
    assert steady(det, 5, 50, start=t + 60.0) > 0


def test_volume_below_factor_is_no_spike() -> None:
    det = VolumeDetector()
    t = steady(det, 40, 50)
    assert det.observe("app.log", 120, t) == []
    steady(det, 3, 50, start=t + 60.0)


def test_volume_not_before_learn_minutes() -> None:
    det = VolumeDetector(learn_minutes=30)
    t = steady(det, 10, 50)
    assert det.observe("app.log", 5000, t) == []


def test_volume_needs_min_lines() -> None:
    det = VolumeDetector(min_lines=100, learn_minutes=5)
    t = steady(det, 10, 6)
    assert det.observe("app.log", 99, t) == []


def test_volume_idle_minutes_count_as_zero() -> None:
    det = VolumeDetector(learn_minutes=5)
    t = steady(det, 10, 60)
    # an hour without a call: the baseline falls towards zero
    baseline = det.baseline("app.log")
    det.observe("app.log", 0, t + 3600.0)
    after = det.baseline("app.log")
    assert baseline is not None and after is not None and after < baseline / 10


def test_volume_files_are_separate() -> None:
    det = VolumeDetector(learn_minutes=5)
    for minute in range(10):
        assert det.observe("quiet.log", 1, minute * 60.0) == []
        assert det.observe("busy.log", 1000, minute * 60.0 + 1) == []
    assert det.observe("busy.log", 1000, 600.0) == []
    assert [f.fields["file"] for f in det.observe("quiet.log", 500, 600.0)] == ["quiet.log"]


def test_volume_snapshot_restore_keeps_the_baseline() -> None:
    det = VolumeDetector()
    t = steady(det, 40, 50)
    again = VolumeDetector.restore(json.loads(json.dumps(det.snapshot())), 3.0, 100, 30)
    assert again.baseline("app.log") == pytest.approx(50.0)
    # the minute after a restart may hold a backlog: not a spike
    assert again.observe("app.log", 5000, t + 600.0) == []
    # a later spike is
    t = steady(again, 2, 50, start=t + 660.0)
    assert len(again.observe("app.log", 500, t)) == 1


def test_volume_first_minute_backlog_is_not_learned() -> None:
    det = VolumeDetector(learn_minutes=30)
    det.observe("app.log", 100_000, 30.0)  # the file's backlog, read at start
    t = steady(det, 40, 50, start=60.0)
    assert det.baseline("app.log") == pytest.approx(50.0)
    assert len(det.observe("app.log", 500, t)) == 1


# -- templates and new error signatures
