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
    kind: str  # the family's # TYPE it was parsed with
    seen: float  # when last served


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

    def parse(self, text: str, max_series: int, now: float, openmetrics: bool = False) -> Parsed:
        self._forget(now)
        if openmetrics:
            return self._whole(text, max_series)
        out = Parsed([])
        types: dict[str, str] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for raw in text.split("\n"):
            line = raw.strip(" \t\r")
            if not line or line[0] == "#":
                if line.startswith("# TYPE "):
                    parts = line.split()
                    if len(parts) == 4:
                        types[parts[2]] = parts[3]
                continue
            end = line.rfind("}") + 1
            if not end:
                m = _SPLIT.search(line)
                end = m.start() if m else len(line)
            key, rest = line[:end], _SPLIT.split(line[end:].strip(" \t"))
            kind = _kind_of(key, types)
            known = self.known.get(key)
            plain = 1 <= len(rest) <= 2 and _VALUE.fullmatch(rest[0]) is not None
            if known is not None and known.kind == kind and plain:
                series, value = known.series, float(rest[0])
            else:
                if known is None and len(self.known) >= max_series:
                    out.dropped_series += 1  # a new series past the bound: not even parsed
                    continue
                series, value = self._line(line, key, kind, types)
                self.known[key] = _Known(series, kind, now)  # counts in max_series
            self.known[key].seen = now
            identity = (series.name, tuple(sorted(series.labels.items())))
            if identity in seen:
                raise ParseError(f"a series given twice: {key[:200]!r}")
            seen.add(identity)
            if not math.isfinite(value) or metric_problem(series.name, series.labels):
                out.invalid += 1
                continue
            out.samples.append((series, value))
        return out

    def _forget(self, now: float) -> None:
        gone = [k for k, v in self.known.items() if now - v.seen > FORGET_AFTER]
        for key in gone:
            del self.known[key]

    def _line(self, line: str, key: str, kind: str, types: dict[str, str]) -> tuple[Series, float]:
        """One sample line through prometheus_client, with its family's TYPE."""
        from prometheus_client.parser import text_string_to_metric_families

        name = key.split("{", 1)[0]
        family = next((f for f in _families(name) if f in types), None)
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


def _kind_of(key: str, types: dict[str, str]) -> str:
    name = key.split("{", 1)[0]
    return next((types[f] for f in _families(name) if f in types), "untyped")


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
