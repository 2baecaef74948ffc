"""What the alert engine hands to notifiers: an alert at a transition.
In the base layer because the hub's notifiers will send its alerts too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")


@dataclass(frozen=True)
class Alert:
    """One alert instance (a rule and one label set) at a transition."""

    rule: str  # the rule's name; also labels["alertname"]
    state: Literal["firing", "resolved"]
    severity: str
    labels: Mapping[str, str]  # the series' labels, the rule's labels, alertname, host
    summary: str
    value: float  # the expression's value at the transition (nan if absent)
    starts_at: float  # Unix time it started firing
    ends_at: float | None  # Unix time it resolved; None while firing
    host: str
    fingerprint: str  # stable id of rule + labels: the same instance across restarts
    repeat: bool = False  # a reminder for an alert still firing (`repeat` interval)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "state": self.state,
            "severity": self.severity,
            "labels": dict(self.labels),
            "summary": self.summary,
            "value": self.value,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "host": self.host,
            "fingerprint": self.fingerprint,
            "repeat": self.repeat,
            "annotations": dict(self.annotations),
        }
