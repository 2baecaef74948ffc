"""`[[scrape]]`: local Prometheus endpoints (node_exporter, an application's
/metrics), scraped on their own interval and shipped and alerted on like
the host metrics. `[textfile]`: node_exporter's textfile collector, every
`*.prom` file of a directory read each interval.

Each scraped series keeps its name and labels, plus `scrape="NAME"` and
the table's `labels`; a scraped label that one of those also sets becomes
`exported_NAME` unless `honor_labels` (Prometheus' rule). At most
`max_series` series per scrape: the rest are dropped and counted, so an
exporter that suddenly serves a million series (a cardinality bomb) costs
one counter. Each scrape reports `scrape_up` (1 when the answer was read
and parsed whole), `scrape_duration_seconds`, `scrape_samples` and
`scrape_series_dropped_total`; a failed scrape sends no series (they go
stale, as in Prometheus) and says why in `vigil status`. The connection to
a target is kept from one scrape to the next (agent/core/keptget.py),
as Prometheus keeps it; one the target closes, or that a timeout cut in
the middle of an answer, is replaced at the next scrape.

A textfile that cannot be read or parsed is reported in
`textfile_scrape_error{file}` (1) and skipped; the others are still read.
Files should be written atomically (write elsewhere, then rename), as
node_exporter expects: a half-written file is a parse error, counted and
skipped until it is whole.

Parsing: collectors/promtext.py (prometheus_client's parser, with a cache).
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import structlog

from agent.core.records import Metric, Record, Spec, counter, gauge
from agent.core.schema import Duration, Invalid, check_http_url, check_identifier, opt
from collectors.base import Collector
from collectors.promtext import ParseError, Parser, relabeler

if TYPE_CHECKING:
    from agent.core.h1 import Client
    from agent.core.keptget import KeptGet

log = structlog.get_logger("vigil.collectors.scrape")

ACCEPT = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5"
MAX_TEXTFILE = 16 << 20  # bytes in one *.prom file
# an answer this small is parsed on the loop: about 2 ms for a node_exporter's
# 60 KB, once its series are known (collectors/promtext.py's cache)
INLINE_BYTES = 256 << 10


def _check_labels(labels: Mapping[str, str]) -> str | None:
    for key in labels:
        if check_identifier(key) or "." in key or "-" in key:
            return f"label name {key!r} is not a Prometheus label name"
        if key == "scrape":
            return "the label scrape is the agent's: it holds the table's name"
    return None


def _check_absolute(path: Path | None) -> str | None:
    return None if path is None or path.is_absolute() else f"must be an absolute path, got {path}"


@dataclass(frozen=True)
class ScrapeConfig:
    name: str = opt(check=check_identifier)
    url: str = opt(check=check_http_url)
    interval: Duration | None = opt(None, min=1.0)  # default: [agent] interval
    timeout: Duration | None = opt(None, min=0.1)  # default: the interval, at most 10 s
    labels: dict[str, str] = opt(factory=dict, check=_check_labels)
    honor_labels: bool = False
    max_series: int = opt(10_000, min=1)

    def __post_init__(self) -> None:
        if self.interval and self.timeout and self.timeout > self.interval:
            raise Invalid(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)",
                key="timeout",
            )


@dataclass(frozen=True)
class TextfileSection:
    directory: Path | None = opt(None, check=_check_absolute)  # off until set
    interval: Duration | None = opt(None, min=1.0)  # default: [agent] interval
    max_series: int = opt(10_000, min=1)  # over all the directory's files


SCRAPE_SPECS: tuple[Spec, ...] = (
    gauge("scrape_up", "1 if the last scrape of a target was read and parsed whole, else 0."),
    gauge("scrape_duration_seconds", "How long the last scrape of a target took."),
    gauge("scrape_samples", "Samples the last scrape of a target kept."),
    counter("scrape_series_dropped_total", "Series a target served beyond max_series."),
    counter(
        "scrape_samples_invalid_total",
        "Samples dropped: a NaN or infinite value, a name or label the hub would refuse,"
        " or a metric name the agent reports itself.",
    ),
)
TEXTFILE_SPECS: tuple[Spec, ...] = (
    gauge("textfile_scrape_error", "1 if a *.prom file could not be read or parsed, else 0."),
    gauge("textfile_mtime_seconds", "When a *.prom file was last modified."),
    counter("textfile_series_dropped_total", "Series beyond [textfile] max_series."),
    counter(
        "textfile_samples_invalid_total",
        "Samples dropped: a NaN or infinite value, a name or label the hub would refuse,"
        " or a metric name the agent reports itself.",
    ),
)


def _read_regular(path: str) -> tuple[bytes, float]:
    """A *.prom file's bytes and mtime; ParseError for anything but a
    regular file (a FIFO would block the read for good) or one too large."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ParseError("not a regular file")
        if st.st_size > MAX_TEXTFILE:
            raise ParseError(f"larger than {MAX_TEXTFILE >> 20} MiB")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_TEXTFILE + 1), st.st_mtime
    finally:
        os.close(fd)


class ScrapeCollector(Collector):
    """One `[[scrape]]` target; collect() is one scrape."""

    blocking = False
    specs = SCRAPE_SPECS

    def __init__(self, cfg: ScrapeConfig, timeout: float) -> None:
        self.cfg = cfg
        self.name = f"scrape:{cfg.name}"
        self.parser = Parser(relabeler({**cfg.labels, "scrape": cfg.name}, cfg.honor_labels))
        self.own = {"scrape": cfg.name}
        self.headers = {"Accept": ACCEPT}
        self.dropped = 0
        self.invalid = 0
        self.error: str | None = None
        self.timeout = timeout
        self.kept: KeptGet | None = None  # the connection kept between scrapes
        self.client: Client | None = None  # for a target that redirects

    async def collect(self, ts: float, mono: float) -> Sequence[Record]:
        from agent.core import h1
        from agent.core.keptget import KeptGet

        start = time.monotonic()
        out: list[Record] = []
        try:
            if self.kept is None:
                self.kept = KeptGet(self.cfg.url, self.headers)
            # within the scheduler's timeout: a scrape that hangs is a failed
            # scrape (scrape_up 0), not one whose records never come
            async with h1.deadline(self.timeout):
                response = await self.kept.get()
                location = response.header("location")
                if response.status in h1.REDIRECTS and location:  # rare: h1 follows them
                    if self.client is None:
                        self.client = h1.Client()
                    url = urljoin(self.cfg.url, location)
                    response = await self.client.fetch("GET", url, headers=self.headers)
            if response.status != 200:
                raise ParseError(f"{self.cfg.url} answered {response.status}")
            if len(response.body) <= INLINE_BYTES:  # a thread handoff costs more
                parsed = self._parse(response, time.time())
            else:  # off the loop: a large answer takes a while to decode and parse
                parsed = await asyncio.get_running_loop().run_in_executor(
                    None, self._parse, response, time.time()
                )
        except asyncio.TimeoutError:  # TimeoutError itself from 3.11
            self.error = f"timed out after {self.timeout:g}s"
            up, kept = 0.0, 0
        except (OSError, ValueError, LookupError, h1.HttpError) as exc:  # ParseError: ValueError
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            up, kept = 0.0, 0
        else:
            self.error = None
            out = parsed.records(ts)
            self.dropped += parsed.dropped_series
            self.invalid += parsed.invalid
            up, kept = 1.0, len(parsed.samples)
        took = time.monotonic() - start
        out += [
            Metric("scrape_up", up, ts, self.own),
            Metric("scrape_duration_seconds", took, ts, self.own),
            Metric("scrape_samples", kept, ts, self.own),
            Metric("scrape_series_dropped_total", self.dropped, ts, self.own, "counter"),
            Metric("scrape_samples_invalid_total", self.invalid, ts, self.own, "counter"),
        ]
        return out

    def _parse(self, response: Any, now: float) -> Any:
        openmetrics = "openmetrics" in response.header("content-type")
        text = response.body.decode(response.charset or "utf-8", "replace")  # LookupError
        return self.parser.parse(text, self.cfg.max_series, now, openmetrics)

    def problem(self) -> str | None:
        return self.error

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()
        if self.client is not None:
            self.client.close()


@dataclass
class _File:
    parser: Parser
    mtime: float = 0.0
    error: bool = False


class TextfileCollector(Collector):
    """`[textfile] directory`: every *.prom file, each interval (in a thread)."""

    name = "textfile"
    blocking = True
    specs = TEXTFILE_SPECS

    def __init__(self, cfg: TextfileSection, reserved: frozenset[str] = frozenset()) -> None:
        assert cfg.directory is not None
        self.cfg = cfg
        self.directory = cfg.directory
        # the agent's own metric names: a textfile series of one would stand
        # beside the agent's, same name and maybe same labels, and rules on
        # it would see both (node_exporter refuses such a collision too)
        self.reserved = reserved
        self.taken: set[str] = set()  # reserved names already logged
        self.files: dict[str, _File] = {}
        self.dropped = 0
        self.invalid = 0
        self.error: str | None = None

    def collect(self, ts: float, mono: float) -> Sequence[Record]:
        out: list[Record] = []
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".prom"))
            self.error = None
        except OSError as exc:
            self.error = f"cannot list {self.directory}: {exc.strerror or exc}"
            names = []
        left = self.cfg.max_series
        for name in names:
            path = str(self.directory / name)
            state = self.files.get(path) or _File(Parser(relabeler({}, True)))
            self.files[path] = state
            try:
                data, state.mtime = _read_regular(path)
                parsed = state.parser.parse(data.decode("utf-8"), max(left, 0) or 1, ts)
            except (OSError, ValueError) as exc:  # UnicodeDecodeError, ParseError
                state.error = True
                out.append(Metric("textfile_scrape_error", 1, ts, {"file": path}))
                self.error = f"{path}: {exc}"[:500]
                continue
            state.error = False
            kept = len(parsed.samples) if left > 0 else 0
            self.dropped += parsed.dropped_series + (len(parsed.samples) - kept)
            self.invalid += parsed.invalid
            left -= kept
            if kept:
                out += self._own_names_dropped(path, parsed.records(ts))
            out.append(Metric("textfile_scrape_error", 0, ts, {"file": path}))
            out.append(Metric("textfile_mtime_seconds", state.mtime, ts, {"file": path}))
        for gone in set(self.files) - {str(self.directory / n) for n in names}:
            del self.files[gone]
        out.append(Metric("textfile_series_dropped_total", self.dropped, ts, type="counter"))
        out.append(Metric("textfile_samples_invalid_total", self.invalid, ts, type="counter"))
        return out

    def _own_names_dropped(self, path: str, records: list[Metric]) -> list[Metric]:
        if not self.reserved or not any(r.name in self.reserved for r in records):
            return records
        kept = [r for r in records if r.name not in self.reserved]
        self.invalid += len(records) - len(kept)
        for name in {r.name for r in records if r.name in self.reserved} - self.taken:
            self.taken.add(name)
            log.warning("textfile_metric_name_taken", file=path, metric=name)
        taken = sorted({r.name for r in records} & self.reserved)
        self.error = f"{path}: {', '.join(taken)[:200]} is the agent's own: dropped"
        return kept

    def problem(self) -> str | None:
        return self.error
