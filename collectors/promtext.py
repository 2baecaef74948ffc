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

In front of that cache, a template of the last text read line by line:
an exporter serves the same lines in the same order each time, and only
the values change. The template keeps the comment and blank lines whole,
and for each sample line written `key value` (one space, a plain value,
no timestamp) its key and series. A text with as many lines, the same
comment lines, and each sample line its key, a space and a plain value,
is read with a split, a few maps and one regex for the whole text instead
of a dozen steps per line: exactly what the line by line reading gives for
it (tests/collectors/test_promtext.py compares the two on generated
texts). Any other text is read line by line, and makes the next template.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import getitem
from types import MappingProxyType

from agent.core.protocol import metric_problem
from agent.core.records import Metric, MetricType, metrics

FORGET_AFTER = 3600.0  # seconds a series not served any more still counts in max_series
FORGET_EVERY = 60.0  # seconds between looks for such series
_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
# the values the cached path takes itself; anything else goes to prometheus_client
_VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN", re.ASCII)
_SPLIT = re.compile(r"[ \t]+")
# a template's values, joined by newlines: any plain ones, and a quick look at the alphabet
_VALUES = re.compile(f"(?:{_VALUE.pattern})(?:\n(?:{_VALUE.pattern}))*", re.ASCII)
_DECIMAL = re.compile(r"[0-9.eE+\-Inf\n]*")


class ParseError(ValueError):
    """The text is not valid exposition; the message says where."""


@dataclass(frozen=True)
class Series:
    name: str
    labels: Mapping[str, str]
    type: MetricType


@dataclass
class _Known:
    series: Series
    identity: str  # name and sorted labels: two keys may be one series
    refused: bool  # what the hub would refuse: dropped and counted
    seen: float = 0.0  # when last served


@dataclass
class _Template:
    """The last text read line by line, as the module's docstring says."""

    count: int  # lines
    fixed: tuple[bool, ...]  # the lines that must come again whole (comments, blank)
    lines: tuple[str, ...]  # those lines
    samples: tuple[bool, ...]  # the others: `key value`
    prefixes: tuple[str, ...]  # their key and the space, in order
    cuts: tuple[slice, ...]  # where their value starts
    known: tuple[_Known, ...]  # their series
    columns: tuple[tuple[str, ...], tuple[Mapping[str, str], ...], tuple[MetricType, ...]]
    clean: bool  # no series the hub would refuse
    used: float = 0.0  # when last read through: the series' `seen`, stamped lazily


@dataclass
class Parsed:
    samples: list[tuple[Series, float]]
    dropped_series: int = 0  # past max_series
    invalid: int = 0  # not finite, or what the hub would refuse
    # the samples as columns (names, values, labels, types), when read through a template
    columns: (
        tuple[Sequence[str], list[float], Sequence[Mapping[str, str]], Sequence[MetricType]] | None
    ) = None

    def records(self, ts: float) -> list[Metric]:
        """The samples as metric records stamped `ts`."""
        if self.columns is not None:
            names, values, labels, types = self.columns
            return metrics(names, values, ts, labels, types)
        return [Metric(s.name, value, ts, s.labels, s.type) for s, value in self.samples]


class Parser:
    """One source's parser and its cache. `relabel(labels)` gives the
    labels a series is stored with (the source's own, conflicts resolved)."""

    def __init__(self, relabel: Callable[[dict[str, str]], dict[str, str]]) -> None:
        self.relabel = relabel
        self.known: dict[str, _Known] = {}
        self.types: dict[str, str] = {}  # the # TYPE lines the verdicts were made with
        self.forgot = 0.0
        self.template: _Template | None = None

    def parse(self, text: str, max_series: int, now: float, openmetrics: bool = False) -> Parsed:
        if now - self.forgot >= FORGET_EVERY:
            self._forget(now)
        if openmetrics:
            return self._whole(text, max_series)
        lines = text.split("\n")
        if self.template is not None:
            parsed = self._steady(self.template, lines, now)
            if parsed is not None:
                return parsed
            self._stamp()
            self.template = None
        return self._lines(lines, max_series, now)

    def _steady(self, template: _Template, lines: list[str], now: float) -> Parsed | None:
        """The text read through the template, or None when it does not fit."""
        if len(lines) != template.count or tuple(compress(lines, template.fixed)) != template.lines:
            return None
        given = list(compress(lines, template.samples))
        if not all(map(str.startswith, given, template.prefixes)):
            return None
        given = list(map(getitem, given, template.cuts))
        joined = "\n".join(given)
        # in this alphabet float() takes exactly the plain values; beyond it, the regex says
        if not _DECIMAL.fullmatch(joined) and not _VALUES.fullmatch(joined):
            return None
        try:
            values = list(map(float, given))
        except ValueError:
            return None  # read line by line: prometheus_client's verdict
        template.used = now
        if template.clean and all(map(math.isfinite, values)):
            names, labels, types = template.columns
            samples = list(zip((k.series for k in template.known), values))
            return Parsed(samples, columns=(names, values, labels, types))
        out = Parsed([])
        for known, value in zip(template.known, values):
            if known.refused or not math.isfinite(value):
                out.invalid += 1
            else:
                out.samples.append((known.series, value))
        return out

    def _lines(self, lines: list[str], max_series: int, now: float) -> Parsed:
        """The text read line by line; a template of it for the next, if it can be one."""
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
        fits = True  # whether the text can be the next one's template
        samples: list[bool] = []
        served: list[_Known] = []
        for line in lines:
            if not line or line[0] == "#":
                samples.append(False)
                continue
            if line[0] in " \t" or line[-1] in " \t\r":
                line = line.strip(" \t\r")
                fits = False
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
                    fits = False
                    continue
                series, value = self._line(line, key, types)
                known = self.known[key] = _Known(series, _identity(series), _refused(series))
            known.seen = now
            if known.identity in seen:
                raise ParseError(f"a series given twice: {key[:200]!r}")
            seen.add(known.identity)
            if fits:
                # the template's test: `key value`, one space, a plain value
                fits = len(rest) == 1 and line[end] == " " and len(line) == end + 1 + len(rest[0])
                fits = fits and _VALUE.fullmatch(rest[0]) is not None
                samples.append(True)
                served.append(known)
            if known.refused or not math.isfinite(value):
                out.invalid += 1
                continue
            out.samples.append((known.series, value))
        if fits:
            self.template = _template(lines, samples, served, now)
        return out

    def _stamp(self) -> None:
        """The template's series were served until it was last read through."""
        if self.template is not None:
            used = self.template.used
            for known in self.template.known:
                known.seen = max(known.seen, used)

    def _forget(self, now: float) -> None:
        self.forgot = now
        self._stamp()
        gone = [k for k, v in self.known.items() if now - v.seen > FORGET_AFTER]
        for key in gone:
            del self.known[key]
        if self.template is not None and now - self.template.used > FORGET_AFTER:
            self.template = None  # its series may be among those forgotten

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


def _template(lines: list[str], samples: list[bool], served: list[_Known], now: float) -> _Template:
    keys = [line.rpartition(" ")[0] for line in compress(lines, samples)]
    series = [k.series for k in served]
    return _Template(
        count=len(lines),
        fixed=tuple(not s for s in samples),
        lines=tuple(line for line, s in zip(lines, samples) if not s),
        samples=tuple(samples),
        prefixes=tuple(key + " " for key in keys),
        cuts=tuple(slice(len(key) + 1, None) for key in keys),
        known=tuple(served),
        columns=(
            tuple(s.name for s in series),
            tuple(s.labels for s in series),
            tuple(s.type for s in series),
        ),
        clean=not any(k.refused for k in served),
        used=now,
    )


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
