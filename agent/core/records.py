"""The records every collector produces (docs/protocol.md).

A record carries the wall-clock time it was observed (UTC, float seconds)
and a kind. Records are immutable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple

MetricType = Literal["gauge", "counter"]  # on the wire and in the hub
# What /metrics says of a family: a summary's samples are gauges on the wire
# (precomputed quantiles with a `quantile` label; no _sum or _count).
ExpositionType = Literal["gauge", "counter", "summary"]
NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric a part may emit: its name, type, and what it means (the
    `/metrics` help text; tests/test_docs.py holds docs/metrics.md to it)."""

    name: str
    type: ExpositionType
    help: str


def gauge(name: str, help: str) -> Spec:
    return Spec(name, "gauge", help)


def counter(name: str, help: str) -> Spec:
    return Spec(name, "counter", help)


def summary(name: str, help: str) -> Spec:
    return Spec(name, "summary", help)


class Renamed(NamedTuple):
    old: str
    factor: float  # the new value times this is the old one
    change: str  # what changed, for people


# Metrics renamed to Prometheus' conventions, by new name. `[agent]
# legacy_metric_names = true` sends the old one too, for one release
# (CHANGELOG, docs/metrics.md).
RENAMED: Mapping[str, Renamed] = MappingProxyType(
    {
        "check_certificate_expiry_seconds": Renamed(
            "check_certificate_expiry_days", 1 / 86400, "seconds, not days"
        )
    }
)


def with_legacy_names(records: Sequence[Record]) -> Sequence[Record]:
    """`records` and, for each metric renamed, a copy under its old name."""
    extra: list[Record] = []
    for r in records:
        if isinstance(r, Metric) and r.name in RENAMED:
            old = RENAMED[r.name]
            extra.append(r._replace(name=old.old, value=r.value * old.factor))
    return [*records, *extra] if extra else records


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


def metrics(
    names: Iterable[str],
    values: Iterable[float],
    ts: float,
    labels: Iterable[Mapping[str, str]],
    types: Iterable[MetricType],
) -> list[Metric]:
    """Metric records from columns of equal length, all stamped `ts`: built
    by map and zip, without a Python call per record (a scrape of 500 series
    in half the time of calling Metric for each)."""
    return list(
        map(
            _tuple_new,
            itertools.repeat(Metric),
            zip(names, values, itertools.repeat(ts), labels, types),
        )
    )


_tuple_new = tuple.__new__


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
    """One run of a synthetic check (docs/checks.md): the outcome
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


# -- values any stage can carry ---------------------------------------------------

MAX_DEPTH = 8  # containers nested deeper are replaced by a note
MAX_ITEMS = 1000  # items kept per map or array
MAX_TEXT = 16384  # characters kept per string
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what msgpack encodes as an integer


def encodable(value: Any, depth: int = 0) -> Any:
    """`value` reduced to what msgpack, the hub's JSON store and every reader
    take: integers beyond 64 bits and non-finite floats become strings,
    strings, maps and arrays are capped, map keys become strings, deeper
    nesting becomes a note.

    Used on whatever comes from outside (a JSON log line's fields), and by
    the buffer as the last resort for a record msgpack refused, so one
    hostile line can never block the records committed with it."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else _int_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return valid_text(value[:MAX_TEXT])
    if isinstance(value, bytes):
        return encodable(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        return f"(nested deeper than {MAX_DEPTH} levels, left out)"
    if isinstance(value, Mapping):
        return {
            encodable(k if isinstance(k, str) else text_of(k)): encodable(v, depth + 1)
            for k, v in itertools.islice(value.items(), MAX_ITEMS)
        }
    if isinstance(value, list | tuple):
        return [encodable(v, depth + 1) for v in value[:MAX_ITEMS]]
    return text_of(value)[:MAX_TEXT]


def valid_text(value: str) -> str:
    """`value` with lone surrogates replaced by U+FFFD: JSON can spell them
    ("\\ud800") but UTF-8, msgpack and the hub cannot carry them."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def _int_text(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # beyond Python's int-to-text limit (4300 digits)
        return f"(integer of {value.bit_length()} bits, left out)"


def text_of(value: Any) -> str:
    """str(value), for any value: never raises."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    try:
        return str(value)
    except (ValueError, RecursionError):
        return f"({type(value).__name__}, not representable)"


def encodable_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record dict msgpack refused, reduced by `encodable`; a metric's value
    stays a number (a float), as the hub requires."""
    value = record.get("value")
    reduced = encodable(dict(record))
    if record.get("kind") == "metric" and isinstance(value, int) and not isinstance(value, bool):
        try:
            reduced["value"] = float(value)
        except OverflowError:
            reduced["value"] = math.inf if value > 0 else -math.inf
    return reduced  # type: ignore[no-any-return]
