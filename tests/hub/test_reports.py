"""The daily report (hub/reports/) from a store fed a recorded day
(tests/hub/recorded_day.py): every figure exactly, the renderers escaping
what the fleet sent, an empty day, bad dates, and the schedule's rules."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pytest

from agent.core import protocol
from agent.core.schema import ConfigError
from hub.config import ReportsSection
from hub.reports.daily import daily, signature
from hub.reports.days import BadDate, bounds, parse_date, yesterday, zone
from hub.reports.render import render, to_html, to_markdown
from hub.reports.schedule import as_alert, due, last_sent
from hub.store import Store
from tests.hub import recorded_day as rec

UTC = dt.timezone.utc
STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
CHUNK = 500


def fill(store: Store) -> None:
    """The recorded day through Store.ingest, as the hub stores batches:
    each chunk received at its newest record's time (a record from 2100
    arrives the day after, and is clamped to then)."""
    for host, records in rec.records().items():
        seq = 1
        normal = [r for r in records if r["ts"] < 4e9]
        for i in range(0, len(normal), CHUNK):
            chunk = normal[i : i + CHUNK]
            seq = _ingest(store, host, chunk, seq, max(r["ts"] for r in chunk))
        future = [r for r in records if r["ts"] >= 4e9]
        if future:
            _ingest(store, host, future, seq, rec.END + 86400)
    for host, state, since, at in rec.SILENCES:
        gap = at - since
        summary = f"{host} has sent nothing for {gap:.0f} s"
        labels = {"alertname": "HostSilent", "host": host, "severity": "high"}
        store.hub_alert(host, "HostSilent", state, "high", since, summary, labels, at)
    store.set_flag("gone-01", "retired", True)


def _ingest(store: Store, host: str, records: list[dict[str, Any]], seq: int, at: float) -> int:
    body = protocol.encode_batch(host, STREAM, seq, records, "0.1.0", at, 60.0)
    store.ingest(protocol.decode_batch(body), at)
    return seq + len(records)


def test_the_recorded_day_gives_exactly_the_expected_report(store, reader):
    fill(store)
    report = daily(reader, dt.date(2026, 3, 10), zone("UTC"), now=rec.END + 7 * 86400)
    expected = rec.expected()
    for key in expected:  # one section at a time: a failure names it
        assert report[key] == expected[key], key
    assert report == expected
    json.dumps(report, allow_nan=False)  # nothing JSON cannot carry


def test_an_empty_day_is_an_empty_valid_report(store, reader):
    report = daily(reader, dt.date(2026, 3, 10), UTC, now=rec.END)
    assert report["hosts"] == report["checks"] == report["incidents"] == report["capacity"] == []
    assert report["security"] == {"failed_logins": [], "brute_force": []}
    assert report["log_errors"] == {"top": [], "new": [], "signatures": 0}
    for fmt in ("json", "md", "html"):
        assert render(report, fmt)
    assert "No hosts." in to_markdown(report)


def test_the_renderers_escape_what_the_fleet_sent(store, reader):
    fill(store)
    report = daily(reader, dt.date(2026, 3, 10), UTC, now=rec.END + 86400)
    page = to_html(report)
    assert "<script>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "ü&lt;i&gt;&amp;x" in page
    assert "<link" not in page and "src=" not in page and "http" not in page  # standalone
    text = to_markdown(report)
    assert "<script>" not in text and "\\<script\\>" in text
    assert "ü\\<i\\>\\&x" in text
    assert "| web-01 | api | 99.000 % | 99.900 % | 0.000 % | 0.095 |" in text
    assert text.count("\n## ") == 9
    assert json.loads(render(report, "json")) == report


def test_signatures_mask_what_varies():
    assert signature("took 12.5 ms on 10.1.2.3:80 at 12:01:02") == "took <n> ms on <ip> at <time>"
    assert signature("id 550e8400-e29b-41d4-a716-446655440000 ptr 0x7ffe sha a1b2c3d4e5") == (
        "id <uuid> ptr <hex> sha <hex>"
    )
    assert signature("from fe80::1:2 and 2001:db8::ff") == "from <ip> and <ip>"
    assert signature("  many   spaces\t") == "many spaces"


def test_dates():
    assert parse_date("2026-03-10") == dt.date(2026, 3, 10)
    for bad in (
        "2026-3-10",
        "2026-02-30",
        "yesterday",
        "0000-01-01",
        "2026-03-10T00",
        "١٢٣٤-05-06",
    ):
        with pytest.raises(BadDate):
            parse_date(bad)
    # a change of daylight saving time: 23 hours
    start, end = bounds(dt.date(2026, 3, 29), zone("Europe/Paris"))
    assert end - start == 23 * 3600
    assert yesterday(UTC, rec.DAY + 5) == dt.date(2026, 3, 9)


def test_due_once_a_day_after_daily_at(tmp_path: Path):
    cfg = ReportsSection(daily_at="07:00", notify=("f",), timezone="UTC")
    six, eight = rec.DAY + 6 * 3600, rec.DAY + 8 * 3600
    assert due(cfg, six, None) is None
    assert due(cfg, eight, None) == dt.date(2026, 3, 9)
    assert due(cfg, eight, "2026-03-09") is None
    assert due(cfg, eight, "2026-03-08") == dt.date(2026, 3, 9)
    assert due(ReportsSection(daily_at="", notify=("f",)), eight, None) is None
    assert due(ReportsSection(daily_at="07:00"), eight, None) is None  # no notify: off
    assert last_sent(tmp_path) is None
    (tmp_path / "reports.json").write_text("{not json")
    assert last_sent(tmp_path) is None


def test_the_notification_carries_the_report(store, reader):
    fill(store)
    report = daily(reader, dt.date(2026, 3, 10), UTC, now=rec.END + 86400)
    alert = as_alert(report, rec.END + 7 * 3600)
    assert alert.severity == "info" and alert.state == "firing"
    assert alert.summary == report["headline"]
    assert json.loads(alert.annotations["report"]) == report
    assert alert.annotations["description"] == to_markdown(report)
    assert math.isnan(alert.value)


def test_a_reload_applies_hub_reports(tmp_path: Path):
    from hub import config as hub_config
    from hub.reload import prepare

    path = tmp_path / "hub.toml"
    base = f'[hub]\ndata_dir = "{tmp_path}"\n[[hub.notifiers]]\nname = "f"\ntype = "file"\n'
    base += f'path = "{tmp_path / "out"}"\n'
    path.write_text(base)
    old = hub_config.load(path)
    path.write_text(base + '[hub.reports]\nnotify = ["f"]\ndaily_at = "06:30"\n')
    new, _, keep = prepare(old, path)
    assert keep == [] and new.hub.reports.daily_at == "06:30"
    path.write_text(base + '[hub.reports]\nnotify = ["g"]\n')
    with pytest.raises(
        ConfigError, match=r"hub\.reports\.notify\[0\].*no \[\[hub\.notifiers\]\] named 'g'"
    ):
        prepare(old, path)
