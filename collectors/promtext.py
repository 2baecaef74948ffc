"""Prometheus' exposition formats in, our metric records out: what
`[[scrape]]` targets serve and what `[textfile]` files hold.

The grammar is prometheus_client's (`prometheus_client.parser` for the
text format 0.0.4, `prometheus_client.openmetrics.parser` for
OpenMetrics); nothing here parses a label set by hand. What is ours is a
cache that makes a scrape cheap: an exporter serves the same series on
every scrape with new values, so a plain sample line (`series value` or
`series value timestamp`, a value in plain ASCII decimal, NaN or Inf) is
looked up by its part before the value (`name{labels}`, which ends at the
line's last "}", since a value never holds one) and the family's current
`# TYPE`; only a line never seen before, or one that is not plain (an
exemplar, odd spacing, a value like `1_000`), goes through
prometheus_client, alone with its `# TYPE`. A line prometheus_client
refuses makes the whole text a failure, as Prometheus fails a scrape.
OpenMetrics texts are parsed whole by prometheus_client each time.

Series keep the name written on their line (prometheus_client would give
a counter's samples `_total`). Types: counters, and the `_bucket`,
`_count`, `_sum` and `_total` samples of histograms and summaries, are
counters; everything else a gauge (a gauge histogram's too).

Bounds, so that nothing a target serves can cost a batch at the hub:
- a series the hub would refuse (a name over 200 characters, a label
  over 1 MiB: agent/core/protocol.py's `metric_problem`), or whose value
  is NaN or infinite, is dropped and counted as invalid;
- at most `max_series` distinct series within the last hour (not per
  scrape: a target whose label values churn is held at the bound too);
  a new one beyond it is dropped and counted, before it is parsed.
Exposition timestamps are ignored: a sample is stamped with the read's
time, as the agent stamps its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from agent.core.protocol import metric_problem

FORGET_AFTER = 3600.0  # seconds a series not served any more still counts in max_series
FORGET_EVERY = 60.0  # seconds between looks for such series
_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
# the values the cached path takes itself; anything else goes to prometheus_client
_VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN", re.ASCII)
_SPLIT = re.compile(r"[ \t]+")


class ParseError(ValueError):
    """The text is not valid exposition; the message says where."""


@dataclass(frozen=True)
class Series:
    name: str
    labels: Mapping[str, str]
    type: str  # "gauge" or "counter"


@dataclass
class _Known:
    series: Series
    identity: str  # name and sorted labels: two keys may be one series
    refused: bool  # what the hub would refuse: dropped and counted
    seen: float = 0.0  # when last served


@dataclass
class Parsed:
    samples: list[tuple[Series, float]]
    dropped_series: int = 0  # past max_series
    invalid: int = 0  # not finite, or what the hub would refuse


class Parser:
    """One source's parser and its cache. `relabel(labels)` gives the
    labels a series is stored with (the source's own, conflicts resolved)."""

    def __init__(self, relabel: Callable[[dict[str, str]], dict[str, str]]) -> None:
        self.relabel = relabel
        self.known: dict[str, _Known] = {}
        self.types: dict[str, str] = {}  # the # TYPE lines the verdicts were made with
        self.forgot = 0.0

    def parse(self, text: str, max_series: int, now: float, openmetrics: bool = False) -> Parsed:
        if now - self.forgot >= FORGET_EVERY:
            self._forget(now)
        if openmetrics:
            return self._whole(text, max_series)
        lines = text.split("\n")
        types = {}
        for line in lines:  # first: a changed # TYPE makes every verdict stale
            if line.startswith("# TYPE "):
                parts = line.split()
                if len(parts) == 4:
                    types[parts[2]] = parts[3]
        if types != self.types:
            self.known.clear()
            self.types = types
        out = Parsed([])
        seen: set[str] = set()
        for line in lines:
            if not line or line[0] == "#":
                continue
            if line[0] in " \t" or line[-1] in " \t\r":
                line = line.strip(" \t\r")
                if not line or line[0] == "#":
                    continue
            end = line.rfind("}") + 1
            if not end:
                m = _SPLIT.search(line)
                end = m.start() if m else len(line)
            key = line[:end]
            known = self.known.get(key)
            rest = line[end:].split()
            if known is not None and 1 <= len(rest) <= 2 and _VALUE.fullmatch(rest[0]):
                value = float(rest[0])  # the plain case: the series as parsed before
            else:
                if known is None and len(self.known) >= max_series:
                    out.dropped_series += 1  # a new series past the bound: not even parsed
                    continue
                series, value = self._line(line, key, types)
                known = self.known[key] = _Known(series, _identity(series), _refused(series))
            known.seen = now
            if known.identity in seen:
                raise ParseError(f"a series given twice: {key[:200]!r}")
            seen.add(known.identity)
            if known.refused or not math.isfinite(value):
                out.invalid += 1
                continue
            out.samples.append((known.series, value))
        return out

    def _forget(self, now: float) -> None:
        self.forgot = now
        gone = [k for k, v in self.known.items() if now - v.seen > FORGET_AFTER]
        for key in gone:
            del self.known[key]

    def _line(self, line: str, key: str, types: dict[str, str]) -> tuple[Series, float]:
        """One sample line through prometheus_client, with its family's TYPE."""
        from prometheus_client.parser import text_string_to_metric_families

        name = key.split("{", 1)[0]
        family = next((f for f in _families(name) if f in types), None)
        kind = types[family] if family else "untyped"
        text = f"# TYPE {family} {kind}\n{line}\n" if family else f"{line}\n"
        try:
            samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        except Exception as exc:  # its errors are ValueError, and worse on bad input
            raise ParseError(f"{exc}: {line[:200]!r}") from None
        if len(samples) != 1:
            raise ParseError(f"not one sample: {line[:200]!r}")
        # the name as written (prometheus_client gives a counter's sample `_total`)
        return self._make(name, samples[0].labels, kind), float(samples[0].value)

    def _make(self, name: str, labels: dict[str, str], kind: str) -> Series:
        counter = (kind == "counter" and not name.endswith("_created")) or (
            kind in ("histogram", "summary") and name.endswith(_COUNTER_SUFFIXES)
        )
        stored = MappingProxyType(self.relabel(dict(labels)))
        return Series(name, stored, "counter" if counter else "gauge")

    def _whole(self, text: str, max_series: int) -> Parsed:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        out = Parsed([])
        try:
            families = list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ParseError(str(exc)) from None
        for family in families:
            for sample in family.samples:
                if len(out.samples) + out.invalid >= max_series:
                    out.dropped_series += 1
                    continue
                series = self._make(sample.name, sample.labels, family.type)
                if not math.isfinite(sample.value) or metric_problem(series.name, series.labels):
                    out.invalid += 1
                    continue
                out.samples.append((series, sample.value))
        return out


def _identity(series: Series) -> str:
    """Name and sorted labels, as a string: its hash is kept, where a
    tuple's is computed again at every scrape."""
    return repr((series.name, sorted(series.labels.items())))


def _refused(series: Series) -> bool:
    return metric_problem(series.name, series.labels) is not None


def _families(name: str) -> list[str]:
    """The family names a sample name can belong to: itself, or itself
    without a histogram's, summary's or counter's suffix."""
    out = [name]
    for suffix in (*_COUNTER_SUFFIXES, "_created", "_gcount", "_gsum", "_info"):
        if name.endswith(suffix):
            out.append(name[: -len(suffix)])
    return out


def relabeler(
    own: Mapping[str, str], honor_labels: bool
) -> Callable[[dict[str, str]], dict[str, str]]:
    """Prometheus' rule for a scraped label that the target also sets: the
    scraped one becomes `exported_NAME` (the target's wins), or with
    `honor_labels` the scraped one wins."""

    def relabel(labels: dict[str, str]) -> dict[str, str]:
        if honor_labels:
            return {**own, **labels}
        out = dict(own)
        for key, value in labels.items():
            out[f"exported_{key}" if key in own else key] = value
        return out

    return relabel
