"""The alert engine on recorded sample series (agent/alerts/engine.py):
states, `for`, hysteresis, counters with resets, absence, staleness,
repeats, and state kept across a restart."""

from __future__ import annotations

import math

from agent.alerts.engine import TRIM_SLACK, AlertEngine, build_rule
from agent.records import Event, Metric

T0 = 1_800_000_000.0


def rule(name="R", expr="m > 80", for_=0.0, clear="", repeat=0.0, summary="", labels=None):
    return build_rule(name, expr, for_, clear, "high", labels or {}, summary, repeat, ())


class Harness:
    def __init__(self, *rules, state_path=None):
        self.sent = []
        self.events: list[Event] = []
        self.engine = AlertEngine(
            list(rules), "h1", state_path, lambda a, n: self.sent.append(a), self.events.append
        )

    def feed(self, t, value, name="m", **labels):
        self.engine.observe([Metric(name, value, T0 + t, labels)], T0 + t)


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
    h = Harness(rule(expr="avg_over_time(m[1m]) > 80"))
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
    assert h.sent[-1].labels["mount"] == "/b"  # back, and evaluated at once


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
