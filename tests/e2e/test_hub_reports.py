"""The daily report of a real `vigil hub run`, fed the recorded day of
tests/hub/recorded_day.py as agents send it (real batches over HTTP; the
hub's HostSilent history is written with Store.hub_alert before the hub
starts, as the hub's liveness writes it: the liveness itself only judges
the present, not a day in the past). The endpoint and the CLI give the
same report with exactly the expected figures; bad dates are clear
errors; `daily_at` sends one report through a `file` notifier, and not
again after a restart."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.core import protocol
from hub.store.sqlite import SQLiteStore
from tests.conftest import wait_for
from tests.e2e.harness import vigil
from tests.e2e.test_hub_ingest import HubProcess
from tests.hub import recorded_day as rec

STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
KEEP = 'retention_rollup = "0s"\nsilent_after = "1h"\n'


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def send_the_day(hub: HubProcess) -> None:
    for host, records in rec.records().items():
        # the agent sends its header in UTF-8; urllib sends Latin-1: give it the bytes
        token, seq = hub.token(host).encode().decode("latin-1"), 1
        for i in range(0, len(records), 400):
            chunk = records[i : i + 400]
            body = protocol.encode_batch(host, STREAM, seq, chunk, "0.1.0", time.time(), 60.0)
            status, answer = hub.post(protocol.compress(body), token)
            assert status == 200, answer
            seq += len(chunk)


def silences(data_dir: Path) -> None:
    """HostSilent's history, written as hub/liveness.py writes it."""
    store = SQLiteStore(data_dir / "hub.db")
    try:
        for host, state, since, at in rec.SILENCES:
            summary = f"{host} has sent nothing for {at - since:.0f} s"
            labels = {"alertname": "HostSilent", "host": host, "severity": "high"}
            store.hub_alert(host, "HostSilent", state, "high", since, summary, labels, at)
    finally:
        store.close()


def cli(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return vigil("hub", "report", "daily", "--config", str(hub.config), *args)


def test_a_recorded_day_gives_the_expected_report_by_endpoint_and_cli(tmp_path):
    (tmp_path / "hub").mkdir(mode=0o750)
    silences(tmp_path / "hub")
    hub = HubProcess(tmp_path, extra=KEEP + '[hub.reports]\ntimezone = "UTC"\n')
    try:
        send_the_day(hub)
        assert vigil("hub", "retire", "gone-01", "--config", str(hub.config)).returncode == 0
        url = hub.url + "/v1/reports/daily"

        status, kind, body = get(url + "?date=" + rec.DATE)
        assert (status, kind) == (200, "application/json"), body
        report = json.loads(body)
        expected = rec.expected()
        for key in expected:
            assert report[key] == expected[key], key
        assert report == expected

        # the CLI reads the same database beside the running hub: the same report
        result = cli(hub, "--date", rec.DATE, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == report
        for fmt, content_type in (("md", "text/markdown"), ("html", "text/html")):
            status, kind, text = get(f"{url}?date={rec.DATE}&format={fmt}")
            assert status == 200 and kind.startswith(content_type)
            assert cli(hub, "--date", rec.DATE, "--format", fmt).stdout == text
        page = get(f"{url}?date={rec.DATE}&format=html")[2]
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert cli(hub, "--date", rec.DATE).stdout.startswith(  # md by default
            "# vigil daily report 2026-03-10: 4 hosts (1 silent at times), 4 incidents"
        )

        # bad input: a clear error, never a 500
        for query, needle in (
            ("date=2026-02-30", "is not a day"),
            ("date=10/03/2026", "YYYY-MM-DD"),
            ("date=%3Cscript%3E", "YYYY-MM-DD"),
            (f"date={rec.DATE}&format=pdf", "format must be one of json, md, html"),
        ):
            status, kind, body = get(f"{url}?{query}")
            assert status == 400 and needle in json.loads(body)["error"], (query, body)
        result = cli(hub, "--date", "2026-13-01")
        assert result.returncode == 2 and "--date" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

        # an empty day: empty, valid
        status, _, body = get(url + "?date=2020-01-01")
        empty = json.loads(body)
        assert status == 200 and empty["date"] == "2020-01-01"
        assert empty["hosts"] == empty["checks"] == empty["incidents"] == empty["capacity"] == []
        assert empty["security"]["failed_logins"] == []

        # no date: yesterday in the report's time zone (UTC here)
        status, _, body = get(url)
        yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
        assert status == 200 and json.loads(body)["date"] in (
            yesterday.isoformat(),
            (yesterday + dt.timedelta(days=1)).isoformat(),  # midnight passed meanwhile
        )
    finally:
        assert hub.stop() == 0
    assert "Traceback" not in (tmp_path / "hub.log").read_text()


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == name:
            out.append(entry)
    return out


def test_daily_at_sends_one_report_and_not_again_after_a_restart(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    if now.hour == 0 and now.minute < 2:
        pytest.skip("daily_at a minute ago would be yesterday's; run again in a minute")
    earlier = (now - dt.timedelta(minutes=1)).strftime("%H:%M")
    out = tmp_path / "reports.jsonl"
    extra = (
        f'{KEEP}[[hub.notifiers]]\nname = "archive"\ntype = "file"\npath = "{out}"\n'
        f'[hub.reports]\ndaily_at = "{earlier}"\nnotify = ["archive"]\ntimezone = "UTC"\n'
    )
    log = tmp_path / "hub.log"
    hub = HubProcess(tmp_path, extra=extra)
    try:
        lines = wait_for(lambda: out.exists() and out.read_text().splitlines(), 30, "a report")
    finally:
        assert hub.stop() == 0
    [line] = lines
    sent = json.loads(line)
    day = (now - dt.timedelta(days=1)).date().isoformat()
    assert sent["rule"] == "DailyReport" and sent["severity"] == "info"
    assert sent["labels"]["date"] == day
    report = json.loads(sent["annotations"]["report"])
    assert report["date"] == day and sent["summary"] == report["headline"]
    assert sent["annotations"]["description"].startswith(f"# vigil daily report {day}")
    assert json.loads((tmp_path / "hub" / "reports.json").read_text())["daily_last_sent"] == day

    hub = HubProcess(tmp_path, extra=extra)  # same data_dir: it was sent already
    try:
        wait_for(lambda: len(_events(log, "daily_report_schedule")) == 2, 30, "the second look")
    finally:
        assert hub.stop() == 0
    [first, second] = _events(log, "daily_report_schedule")
    assert first["due"] == day and second["due"] is None and second["last_sent"] == day
    assert len(_events(log, "daily_report_sent")) == 1
    assert out.read_text().splitlines() == lines
    assert "Traceback" not in log.read_text()
