"""What is sent: pure functions with literal alerts."""

from __future__ import annotations

from agent.notifiers.payloads import alert_json, alertmanager_alert, slack_text
from tests.agent.notifiers.common import make_alert


def test_alertmanager_payload():
    firing = alertmanager_alert(alert_json(make_alert()))
    assert firing == {
        "labels": {"alertname": "HighCPUUsage", "host": "web-01", "cpu": "all", "severity": "high"},
        "annotations": {
            "summary": "CPU at 94% on web-01 (HighCPUUsage)",
            "runbook": "https://runbooks.example/cpu",
        },
        "startsAt": "2023-11-14T22:13:20.000Z",
    }
    resolved = alertmanager_alert(alert_json(make_alert("resolved")))
    assert resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] == "2023-11-14T22:23:20.000Z"


def test_slack_text():
    assert slack_text(alert_json(make_alert("resolved"))) == (
        "[RESOLVED] high HighCPUUsage on web-01: CPU at 94% on web-01 (HighCPUUsage)"
    )
