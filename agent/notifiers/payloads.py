"""What is sent: an alert in the forms the notifiers deliver. Pure functions.

The alert JSON (`alert_json`) is what exec gets on stdin, what file appends
and what a json webhook and the queue files carry; the others are derived
from it (docs/alerts.md, "The alert JSON")."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from agent.core.alert import Alert


def alert_json(alert: Alert) -> dict[str, Any]:
    """alert.to_dict() with a value JSON can carry: NaN (no value) -> null."""
    data = alert.to_dict()
    if not math.isfinite(data["value"]):
        data["value"] = None
    return data


def alert_env(alert: Alert) -> dict[str, str]:
    """The VIGIL_ALERT_* variables an exec command gets."""
    return {
        "VIGIL_ALERT_NAME": alert.rule,
        "VIGIL_ALERT_STATE": alert.state,
        "VIGIL_ALERT_SEVERITY": alert.severity,
        "VIGIL_ALERT_SUMMARY": alert.summary,
        "VIGIL_ALERT_VALUE": repr(alert.value) if math.isfinite(alert.value) else "",
        "VIGIL_ALERT_HOST": alert.host,
        "VIGIL_ALERT_FINGERPRINT": alert.fingerprint,
        "VIGIL_ALERT_LABELS": json.dumps(dict(alert.labels), sort_keys=True),
        "VIGIL_ALERT_REPEAT": "true" if alert.repeat else "false",
    }


def slack_text(alert: Mapping[str, Any]) -> str:
    """ "[FIRING] high HighCPUUsage on web-01: CPU at 93% on web-01" """
    return (
        f"[{str(alert['state']).upper()}] {alert['severity']} {alert['rule']} "
        f"on {alert['host']}: {alert['summary']}"
    )


def rfc3339(ts: float) -> str:
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One alert (as alert_json made it) in Alertmanager's API v2 form.
    Firing: no endsAt (Alertmanager resolves it `resolve_timeout` after the
    last post unless re-posted); resolved: endsAt = when it resolved."""
    labels = {k: str(v) for k, v in alert["labels"].items() if v != ""}
    labels.setdefault("alertname", str(alert["rule"]))
    labels.setdefault("severity", str(alert["severity"]))
    if alert["host"]:
        labels.setdefault("host", str(alert["host"]))
    annotations = {"summary": str(alert["summary"])}
    annotations.update({k: str(v) for k, v in alert.get("annotations", {}).items()})
    out: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(float(alert["starts_at"])),
    }
    if alert["state"] == "resolved":
        ends = alert.get("ends_at")
        out["endsAt"] = rfc3339(float(ends) if ends is not None else time.time())
    return out
