"""Prometheus' exposition formats in, our metric records out: what
`[[scrape]]` targets serve and what `[textfile]` files hold.

The grammar is prometheus_client's (`prometheus_client.parser` for the
text format 0.0.4, `prometheus_client.openmetrics.parser` for
OpenMetrics); nothing here parses a label set by hand. What is ours is a
cache that makes a scrape cheap: an exporter serves the same series on
every scrape with new values, so the part of a sample line before its
value (`name{labels}`, which ends at the line's last "}", since a value or
timestamp never holds one) is looked up, and only a line never seen
before goes through prometheus_client, alone with its family's `# TYPE`.
A line that prometheus_client refuses makes the whole text a failure, as
Prometheus fails a scrape. OpenMetrics texts (with exemplars after " # ")
are parsed whole by prometheus_client each time.

Types: counters, and the `_bucket`, `_count`, `_sum` and `_total` samples
of histograms and summaries, are counters; everything else a gauge.
Exposition timestamps are ignored: a sample is stamped with the scrape's
time, as the agent stamps its own. Values that are not finite (NaN,
+Inf) are dropped and counted: the hub stores numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

CACHE_MAX = 100_000  # series remembered per target, past which the cache starts over
_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


class ParseError(ValueError):
    """The text is not valid exposition; the message says where."""


@dataclass(frozen=True)
class Series:
    name: str
    labels: Mapping[str, str]
    type: str  # "gauge" or "counter"


@dataclass
class Parsed:
    samples: list[tuple[Series, float]]
    dropped_series: int = 0  # past max_series
    not_finite: int = 0


class Parser:
    """One target's parser and its cache. `relabel(name, labels)` gives the
    labels a series is stored with (the target's own, conflicts resolved)."""

    def __init__(self, relabel: Callable[[dict[str, str]], dict[str, str]]) -> None:
        self.relabel = relabel
        self.cache: dict[str, Series] = {}

    def parse(self, text: str, max_series: int, openmetrics: bool = False) -> Parsed:
        if openmetrics:
            return self._whole(text, max_series)
        if len(self.cache) > CACHE_MAX:
            self.cache.clear()
        out = Parsed([])
        types: dict[str, str] = {}
        seen: set[str] = set()
        for line in text.split("\n"):
            if not line or line[0] == "#":
                if line.startswith("# TYPE "):
                    parts = line.split()
                    if len(parts) == 4:
                        types[parts[2]] = parts[3]
                continue
            end = line.rfind("}") + 1 or line.find(" ")
            if end <= 0:
                raise ParseError(f"a sample with no value: {line[:200]!r}")
            key, rest = line[:end], line[end:].split()
            if not rest or len(rest) > 2:
                raise ParseError(f"expected a value and an optional timestamp: {line[:200]!r}")
            series = self.cache.get(key)
            if series is None:
                series = self.cache[key] = self._series(key, types)
            if key in seen:
                raise ParseError(f"a series given twice: {key[:200]!r}")
            seen.add(key)
            if len(seen) > max_series:
                out.dropped_series += 1
                continue
            try:
                value = float(rest[0])
            except ValueError:
                raise ParseError(f"not a number: {line[:200]!r}") from None
            if not math.isfinite(value):
                out.not_finite += 1
                continue
            out.samples.append((series, value))
        return out

    def _series(self, key: str, types: dict[str, str]) -> Series:
        """A line never seen before, parsed by prometheus_client with the
        `# TYPE` of its family."""
        from prometheus_client.parser import text_string_to_metric_families

        name = key.split("{", 1)[0]
        family = next((f for f in _families(name) if f in types), name)
        kind = types.get(family, "untyped")
        text = f"# TYPE {family} {kind}\n{key} 0\n" if family in types else f"{key} 0\n"
        try:
            samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        except Exception as exc:  # its errors are ValueError, and worse on bad input
            raise ParseError(f"{exc}: {key[:200]!r}") from None
        if len(samples) != 1:
            raise ParseError(f"not one sample: {key[:200]!r}")
        return self._make(samples[0].name, samples[0].labels, kind)

    def _make(self, name: str, labels: dict[str, str], kind: str) -> Series:
        counter = kind == "counter" or (
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
                if len(out.samples) + out.not_finite >= max_series:
                    out.dropped_series += 1
                    continue
                if not math.isfinite(sample.value):
                    out.not_finite += 1
                    continue
                kind = "counter" if family.type in ("counter", "gaugehistogram") else family.type
                out.samples.append((self._make(sample.name, sample.labels, kind), sample.value))
        return out


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
