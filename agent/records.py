"""The records every collector produces (DESIGN.md, "Data model").

A record carries the wall-clock time it was observed (UTC, float seconds)
and a kind. Records are immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple

MetricType = Literal["gauge", "counter"]
NO_LABELS: Mapping[str, str] = MappingProxyType({})


class Metric(NamedTuple):
    """One sample. A named tuple: immutable and cheap, as a host makes hundreds per interval."""

    name: str
    value: float
    ts: float
    labels: Mapping[str, str] = NO_LABELS
    type: MetricType = "gauge"

    @property
    def kind(self) -> Literal["metric"]:
        return "metric"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "metric",
            "name": self.name,
            "labels": dict(self.labels),
            "value": self.value,
            "type": self.type,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """A log match, security finding, alert transition or lifecycle event."""

    type: str  # log | security | alert | check | lifecycle
    ts: float
    message: str
    severity: str = "info"
    fields: Mapping[str, Any] = field(default_factory=dict)

    kind: ClassVar[Literal["event"]] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "event",
            "type": self.type,
            "severity": self.severity,
            "message": self.message,
            "fields": dict(self.fields),
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class CheckRun:
    """One run of a synthetic check (DESIGN.md "check result"): the outcome
    after its retries, with every attempt's status and message."""

    name: str
    ts: float
    type: str  # http | tcp | dns | tls | command
    ok: bool
    status: str  # ok | warning | critical | unknown
    latency: float  # seconds, the last attempt's
    message: str
    attempts: tuple[Mapping[str, Any], ...]  # {"status", "message", "latency"} each
    labels: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)  # status_code, certificate, ...

    kind: ClassVar[Literal["check"]] = "check"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "check",
            "name": self.name,
            "type": self.type,
            "ok": self.ok,
            "status": self.status,
            "latency": self.latency,
            "message": self.message,
            "attempts": [dict(a) for a in self.attempts],
            "labels": dict(self.labels),
            "fields": dict(self.fields),
            "ts": self.ts,
        }


Record = Metric | Event | CheckRun
