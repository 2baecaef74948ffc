"""The alert engine on recorded sample series (agent/alerts/engine.py):
states, `for`, hysteresis, counters with resets, absence, staleness,
repeats, and state kept across a restart."""

from __future__ import annotations

import math
import random
from array import array

import pytest

from agent import config
from agent.alerts.defaults import DEFAULT_ALERTS
from agent.alerts.engine import TRIM_SLACK, AlertEngine, build_rule
from agent.alerts.service import build_rules
from agent.alerts.window import coverage
from agent.core.atomic import write_atomically
from agent.core.records import Event, Metric
from agent.core.schema import ConfigError

T0 = 1_800_000_000.0


def rule(
    name="R",
    expr="m > 80",
    for_=0.0,
    clear="",
    repeat=0.0,
    summary="",
    labels=None,
    min_coverage=0.5,
):
    return build_rule(
        name, expr, for_, clear, "high", labels or {}, summary, repeat, (), min_coverage
    )


class Harness:
    def __init__(self, *rules, state_path=None):
        self.sent = []
        self.events: list[Event] = []
        self.engine = AlertEngine(
            list(rules), "h1", state_path, lambda a, n: self.sent.append(a), self.events.append
        )

    def feed(self, t, value, name="m", **labels):
        self.engine.observe([Metric(name, value, T0 + t, labels)], T0 + t)

    def states(self):
        return [e.fields["state"] for e in self.events]


def test_for_then_firing_then_resolved_with_notifications():
    h = Harness(rule(expr="m > 80", for_=30.0, summary="at {value:.0f} on {host} {mount}"))
    h.feed(0, 90, mount="/")
    h.feed(10, 95, mount="/")
    assert [e.fields["state"] for e in h.events] == ["pending"] and h.sent == []
    h.feed(30, 91, mount="/")
    assert h.sent[-1].state == "firing" and h.sent[-1].summary == "at 91 on h1 /"
    assert h.sent[-1].labels == {"mount": "/", "alertname": "R", "host": "h1", "severity": "high"}
    h.feed(40, 50, mount="/")
    assert h.sent[-1].state == "resolved" and h.sent[-1].ends_at == T0 + 40
    assert [e.fields["state"] for e in h.events] == ["pending", "firing", "resolved"]


def test_a_dip_before_for_elapses_cancels_the_pending_alert():
    h = Harness(rule(for_=30.0))
    h.feed(0, 90)
    h.feed(20, 70)
    h.feed(40, 90)
    h.feed(60, 90)
    assert h.sent == []
    assert [e.fields["state"] for e in h.events] == ["pending", "inactive", "pending"]


def test_hysteresis_resolves_only_below_clear():
    h = Harness(rule(expr="m > 80", clear="< 70"))
    h.feed(0, 85)
    h.feed(10, 75)  # below the threshold, above clear: still firing
    assert [a.state for a in h.sent] == ["firing"]
    h.feed(20, 69)
    assert [a.state for a in h.sent] == ["firing", "resolved"]


def test_one_instance_per_label_set():
    h = Harness(rule(expr='disk_used_percent{mount!="/boot"} > 90'))
    for mount, value in (("/", 95), ("/var", 50), ("/boot", 99), ("/srv", 91)):
        h.feed(0, value, name="disk_used_percent", mount=mount)
    assert sorted(a.labels["mount"] for a in h.sent) == ["/", "/srv"]


def test_rate_over_a_counter_reset():
    h = Harness(rule(expr="rate(c[60s]) > 1"))
    for t, v in ((0, 100), (10, 110), (20, 5), (30, 20)):  # restart at t=20
        h.feed(t, v, name="c")
    # increase 10 + 5 + 15 = 30 over 30 s: 1/s, not above 1
    assert h.sent == []
    h.feed(40, 60, name="c")  # +40: 70 over 40 s
    assert h.sent and math.isclose(h.sent[0].value, 70 / 40)


def test_absent_fires_when_the_series_stops_and_resolves_when_it_returns():
    h = Harness(rule(expr='absent(heartbeat{job="backup"}[60s])'))
    h.feed(0, 1, name="heartbeat", job="backup")
    h.engine.tick(T0 + 30)
    assert h.sent == []
    h.engine.tick(T0 + 61)
    assert [a.state for a in h.sent] == ["firing"] and h.sent[0].labels["job"] == "backup"
    h.feed(70, 1, name="heartbeat", job="backup")
    h.engine.tick(T0 + 71)
    assert [a.state for a in h.sent] == ["firing", "resolved"]


def test_a_series_gone_stale_resolves_on_the_tick():
    h = Harness(rule(expr="m > 80"))
    h.feed(0, 90)
    h.engine.tick(T0 + 100)
    assert [a.state for a in h.sent] == ["firing"]
    h.engine.tick(T0 + 301)  # no sample for 5 minutes: the value is gone
    assert [a.state for a in h.sent] == ["firing", "resolved"]


def test_repeat_reminds_while_firing():
    h = Harness(rule(repeat=60.0))
    for t in range(0, 130, 10):
        h.feed(t, 90)
    assert [(a.state, a.repeat) for a in h.sent] == [
        ("firing", False),
        ("firing", True),
        ("firing", True),
    ]


def test_a_restart_while_firing_keeps_the_alert_without_notifying_again(tmp_path):
    path = tmp_path / "alerts.json"
    first = Harness(rule(for_=20.0), state_path=path)
    first.feed(0, 90)
    first.feed(20, 90)
    assert [a.state for a in first.sent] == ["firing"]
    first.engine.save()

    second = Harness(rule(for_=20.0), state_path=path)
    second.engine.load()
    second.feed(30, 95)
    assert second.sent == [] and second.events == []  # still firing, nothing new
    assert second.engine.status()[0]["instances"][0]["state"] == "firing"
    second.feed(40, 10)
    assert [a.state for a in second.sent] == ["resolved"]
    assert second.sent[0].starts_at == T0 + 20  # the original start, kept


def test_a_restart_while_pending_keeps_the_timer(tmp_path):
    path = tmp_path / "alerts.json"
    first = Harness(rule(for_=60.0), state_path=path)
    first.feed(0, 90)
    first.engine.save()
    second = Harness(rule(for_=60.0), state_path=path)
    second.engine.load()
    second.feed(61, 90)
    assert [a.state for a in second.sent] == ["firing"]


def test_a_damaged_state_file_is_set_aside(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text("{not json")
    h = Harness(rule(), state_path=path)
    h.engine.load()
    assert (tmp_path / "alerts.json.corrupt").exists()


def test_memory_is_bounded_by_the_window():
    h = Harness(rule(expr="avg_over_time(m[60s]) > 80"))
    for t in range(0, 3600, 10):
        h.feed(t, 1)
    (series,) = h.engine.series["m"].values()
    assert len(series.ts) <= 60 / 10 * TRIM_SLACK + 1


def test_labels_in_any_order_are_one_series():
    h = Harness(rule(expr="avg_over_time(m[1m]) > 80", min_coverage=0.0))
    h.engine.observe([Metric("m", 90, T0, {"a": "1", "b": "2"})], T0)
    h.engine.observe([Metric("m", 90, T0 + 10, {"b": "2", "a": "1"})], T0 + 10)
    (series,) = h.engine.series["m"].values()
    assert list(series.values) == [90, 90]
    assert len({fp for fp in h.engine.instances}) == 1


def test_series_gone_quiet_are_forgotten_and_come_back():
    h = Harness(rule(expr="avg_over_time(m[1m]) > 80"))
    h.feed(0, 50, mount="/a")
    h.feed(0, 50, mount="/b")
    for t in range(10, 600, 10):
        h.feed(t, 50, mount="/a")
    assert h.engine.forget_stale(T0 + 600) == 1  # /b: nothing for 10 minutes
    assert [s.labels for s in h.engine.series["m"].values()] == [{"mount": "/a"}]
    h.feed(610, 90, mount="/b")
    assert h.sent == []  # back, with 0 s of its 1 m window: not yet evaluated
    h.feed(640, 90, mount="/b")
    assert h.sent[-1].labels["mount"] == "/b"  # half the window: evaluated


def test_a_bounded_series_still_fires_when_it_crosses():
    """Quiet samples are decided by a bound; the one that crosses is not."""
    h = Harness(rule(expr="max_over_time(m[5m]) > 80"))
    for t in range(0, 300, 10):
        h.feed(t, 40)
    assert h.engine.bounded == 29 and h.sent == []  # all but the first sample
    h.feed(300, 81)
    assert [a.state for a in h.sent] == ["firing"]
    h.feed(310, 40)  # the window still holds 81: still firing
    assert [a.state for a in h.sent] == ["firing"]
    for t in range(320, 620, 10):
        h.feed(t, 40)
    assert [a.state for a in h.sent] == ["firing", "resolved"]


# -- coverage and the forecast band ---------------------------------------------------

GB = 1e9


def disk_rule(min_coverage=0.5, clear=""):
    """The shipped DiskWillFillIn24h: predict_linear(disk_free_bytes[1h], 86400) < 0, for 30m."""
    (d,) = [r for r in DEFAULT_ALERTS if r.name == "DiskWillFillIn24h"]
    return build_rule(d.name, d.expr, d.for_, clear, d.severity, {}, "", 0.0, (), min_coverage)


def burst(h, rnd):
    """The report: 40 s of samples after the start, 2 s apart, while a
    write burst takes 50 MB/s off the disk, with 0.5 GB of measurement noise."""
    for t in range(0, 41, 2):
        h.feed(t, 120 * GB - 0.05 * GB * t + rnd.gauss(0, 0.5 * GB), "disk_free_bytes", mount="/")
        h.engine.tick(T0 + t)


def steady_fill(h, rnd, start, end):
    """Then a 10 s interval, filling at a rate that runs out in about 24 h,
    so the forecast sits at 0 give or take 1 GB of noise per sample."""
    rate = 118 * GB / (86400 + 1960)
    for t in range(start, end, 10):
        value = 118 * GB - rate * (t - 40) + rnd.gauss(0, 1 * GB)
        h.feed(t, value, "disk_free_bytes", mount="/")
        h.engine.tick(T0 + t)


def test_a_forecast_from_40_s_of_samples_makes_no_transition():
    h = Harness(disk_rule())
    burst(h, random.Random(5))
    assert h.events == [] and h.sent == [] and h.engine.instances == {}
    # what the report saw, with the coverage rule off: pending, inactive, pending, ...
    before = Harness(disk_rule(min_coverage=0.0, clear=">= 0"))
    burst(before, random.Random(5))
    assert before.states()[:4] == ["pending", "inactive", "pending", "inactive"]


def test_a_forecast_goes_pending_once_its_window_is_half_covered_and_does_not_flap():
    h = Harness(disk_rule())
    rnd = random.Random(5)
    burst(h, rnd)
    steady_fill(h, rnd, 50, 1800)
    assert h.events == []  # 1,760 s of samples: under half the hour
    steady_fill(h, rnd, 1800, 3 * 3600)
    assert h.states() == ["pending", "firing"]
    assert h.events[0].ts == T0 + 1800  # the first sample that spans half the window
    assert h.events[1].ts == T0 + 1800 + 30 * 60  # `for` counted from there
    assert [a.state for a in h.sent] == ["firing"]
    for t in range(3 * 3600, 4 * 3600, 10):  # files deleted: 500 GB free, flat
        h.feed(t, 500 * GB + rnd.gauss(0, 1 * GB), "disk_free_bytes", mount="/")
    assert h.states() == ["pending", "firing", "resolved"]

    # the same samples without the band (a clear that only undoes the condition) flap
    plain = Harness(disk_rule(clear=">= 0"))
    rnd = random.Random(5)
    burst(plain, rnd)
    steady_fill(plain, rnd, 50, 3 * 3600)
    assert plain.states().count("pending") > 5


def test_the_forecast_band_is_half_to_one_and_a_half_times_the_horizon():
    r = rule(expr="predict_linear(m[10m], 100) < 0")
    assert r.band is not None
    ts = array("d", [0.0, 100.0, 200.0])
    # falling 1 per second, at 120 now: 20 in 100 s, -30 in 150 s, 70 in 50 s
    assert not r.firing_condition(20.0)
    assert r.in_band(ts, array("d", [320.0, 220.0, 120.0]), 200.0)
    # at 160 now: 60, 10 and 110 ahead: safe over the whole band
    assert not r.in_band(ts, array("d", [360.0, 260.0, 160.0]), 200.0)
    # rising 1 per second from -200 now: -150 in 50 s is still below
    assert r.in_band(ts, array("d", [-400.0, -300.0, -200.0]), 200.0)
    # the same from the forecast and the slope, as the engine asks with a running fit
    assert r.in_band_of(20.0, -1.0) and not r.in_band_of(60.0, -1.0)
    assert r.in_band_of(-100.0, 1.0)
    # an explicit clear, or a forecast of now, gets no band
    assert rule(expr="predict_linear(m[10m], 100) < 0", clear=">= 0").band is None
    assert rule(expr="predict_linear(m[10m], 0) < 0").band is None
    assert rule(expr="avg_over_time(m[10m]) < 0").band is None


def test_an_alert_keeps_its_state_while_a_gap_leaves_its_window_thin():
    h = Harness(rule(expr="avg_over_time(m[60s]) > 80", for_=30.0))
    for t in (0, 10, 20, 30):
        h.feed(t, 90)
    assert h.states() == ["pending"]  # at 30: half the window
    h.feed(100, 90)  # after a gap: only this sample in the window
    h.engine.tick(T0 + 100)
    assert h.states() == ["pending"] and h.sent == []  # no verdict: kept, not fired
    for t in (110, 120, 130):
        h.feed(t, 90)
    assert h.states() == ["pending", "firing"]  # covered again at 130
    h.engine.tick(T0 + 200)  # nothing in the window: stale, as before
    assert h.states() == ["pending", "firing", "resolved"]


def test_a_plain_selector_and_absent_need_no_coverage():
    h = Harness(rule(expr="m > 80"), rule(name="A", expr="absent(hb[10m])"))
    h.feed(0, 90)
    h.engine.tick(T0 + 1)
    assert sorted(a.rule for a in h.sent) == ["A", "R"]


def test_explain_shows_the_coverage():
    h = Harness(rule(expr="avg_over_time(m[60s]) > 80"))
    h.feed(0, 90)
    h.feed(10, 90)
    (row,) = h.engine.explain(h.engine.rules[0], T0 + 10)
    assert row["value"] == 90 and row["condition"] is False
    assert row["coverage"] == pytest.approx(10 / 60) and row["min_coverage"] == 0.5


def test_a_restart_keeps_coverage_and_a_firing_forecast_in_its_band(tmp_path):
    path = tmp_path / "alerts.json"
    first = Harness(disk_rule(), state_path=path)
    rnd = random.Random(5)
    burst(first, rnd)
    steady_fill(first, rnd, 50, 3700)
    assert first.states() == ["pending", "firing"]
    first.engine.save()
    write_atomically(*first.engine.series_snapshot())
    lost = tmp_path / "lost" / "alerts.json"  # the same states, the samples lost
    lost.parent.mkdir()
    lost.write_bytes(path.read_bytes())

    second = Harness(disk_rule(), state_path=path)
    second.engine.load()
    steady_fill(second, rnd, 3700, 3 * 3600)  # at once covered, and noisy at the threshold
    assert second.events == [] and second.sent == []
    assert second.engine.status()[0]["instances"][0]["state"] == "firing"
    for t in range(3 * 3600, 4 * 3600, 10):
        second.feed(t, 500 * GB, "disk_free_bytes", mount="/")
    assert second.states() == ["resolved"] and [a.state for a in second.sent] == ["resolved"]

    # without the samples the window starts empty: the firing alert gets no
    # verdict (neither resolved nor notified) until half of it is covered
    third = Harness(disk_rule(), state_path=lost)
    third.engine.load()
    for t in range(3700, 3700 + 1800, 10):
        third.feed(t, 500 * GB, "disk_free_bytes", mount="/")
        third.engine.tick(T0 + t)
    assert third.events == [] and third.engine.status()[0]["instances"][0]["state"] == "firing"
    third.feed(3700 + 1800, 500 * GB, "disk_free_bytes", mount="/")
    assert third.states() == ["resolved"]


def test_min_coverage_comes_from_the_rule_or_alerting(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        "[alerting]\nmin_coverage = 0.8\n"
        '[[alerts]]\nname = "Own"\nexpr = "rate(c[5m]) > 1"\nmin_coverage = 0\n'
        '[[alerts]]\nname = "Other"\nexpr = "rate(c[5m]) > 2"\n'
    )
    rules = {r.name: r for r in build_rules(config.load(path))}
    assert rules["Own"].min_coverage == 0.0 and rules["Other"].min_coverage == 0.8
    assert rules["DiskWillFillIn24h"].min_coverage == 0.8
    assert rules["DiskWillFillIn24h"].band is not None
    # an increase seen on part of the window is only more on all of it: no wait
    assert coverage(rules["BufferDroppingRecords"].expr, 0.8, 100) is None
    for bad in ("1", "1.5", "-0.1"):
        path.write_text(f'[[alerts]]\nname = "X"\nexpr = "rate(c[5m]) > 1"\nmin_coverage = {bad}\n')
        with pytest.raises(ConfigError) as exc:
            config.load(path)
        assert "alerts[0].min_coverage: must be at least 0 and below 1" in str(
            exc.value.problems[0]
        )


def test_a_new_counter_is_judged_from_its_first_increase():
    """A log rule's counter appears with its first match: `increase > N`
    needs no coverage, an increase seen is already that much."""
    h = Harness(rule(expr="increase(c[1h]) >= 3"), rule(name="Slow", expr="rate(c[1h]) > 0"))
    for t, v in ((0, 0), (1, 2), (2, 5)):
        h.feed(t, v, name="c")
    assert [a.rule for a in h.sent] == ["R"]  # rate waits for half the hour


def test_the_default_certificate_rules_fire_on_seconds_and_say_days():
    h = Harness(
        *(
            build_rule(c.name, c.expr, c.for_, c.clear, c.severity, {}, c.summary, 0.0, ())
            for c in DEFAULT_ALERTS
            if c.name.startswith("Certificate")
        )
    )
    h.feed(0, 20 * 86400.0, name="check_certificate_expiry_seconds", check="site")
    assert h.sent == []
    h.feed(1, 13.5 * 86400.0, name="check_certificate_expiry_seconds", check="site")
    assert [a.summary for a in h.sent] == ["the certificate of site expires in 13.5 days"]
    h.feed(2, 2.5 * 86400.0, name="check_certificate_expiry_seconds", check="site")
    assert h.sent[-1].summary == "the certificate of site expires in 2.5 days"
    assert h.sent[-1].rule == "CertificateExpiryCritical"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (45.0, "45 s"),
        (-30.0, "-30 s"),
        (720.0, "12 min"),
        (19800.0, "5.5 h"),
        (-3 * 86400.0, "-3.0 days"),
        (math.nan, "nan"),
    ],
)
def test_duration_in_a_summary_reads_as_people_say_it(seconds, text):
    h = Harness(rule(expr="m < 1e12", summary="in {duration}"))
    h.feed(0, seconds)
    assert [a.summary for a in h.sent] == ([f"in {text}"] if not math.isnan(seconds) else [])
