"""`[statsd]`: a StatsD server on UDP, for applications that push their
counters and timings (the etsy protocol, with DogStatsD's tags).

A datagram holds lines `name:value|type[|@rate][|#tag:value,...]`, one
per line. Types: `c` counter (value / rate is added), `g` gauge (`+N` and
`-N` change it), `ms`, `h`, `d` timer (milliseconds), `s` set (distinct
values). Names and tag keys become Prometheus names: every character
outside `[a-zA-Z0-9_:]` becomes `_` (`api.requests` -> `api_requests`);
tags become labels; a tag without a value is ignored.

What the agent reports each `interval` (as statsd_exporter does, in base
units):
- a counter as a cumulative counter since the agent started;
- a gauge as its last value;
- a timer as a summary of that interval, in seconds: `NAME{quantile}` at
  0.5, 0.9, 0.95, 0.99 (within 1 % of the exact nearest-rank quantile:
  agent/core/sketch.py), plus `NAME_count` and `NAME_sum` cumulative;
- a set as the number of distinct values seen in that interval.

Bounded: at most `max_keys` series (name and tags); a line for a new one
beyond that is dropped and counted in `statsd_dropped_total{reason}`, as
are lines that do not parse. A timer's sketch holds bins, not samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.core.configfile import check_listen, remote_problem, split_host_port
from agent.core.protocol import metric_problem
from agent.core.records import Metric, Record, Spec, counter, gauge
from agent.core.schema import Duration, Invalid, opt
from agent.core.sketch import Window
from collectors.base import Collector

QUANTILES = (0.5, 0.9, 0.95, 0.99)
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
RECEIVE_BUFFER = 8 << 20  # bytes the kernel may hold for us (capped by net.core.rmem_max)
MAX_SET = 100_000  # distinct values remembered per set and interval


@dataclass(frozen=True)
class StatsdSection:
    listen: str | None = opt(None, check=check_listen)  # off until set, e.g. "127.0.0.1:8125"
    allow_remote: bool = False  # listening beyond loopback must be asked for
    interval: Duration | None = opt(None, min=1.0)  # default: [agent] interval
    max_keys: int = opt(10_000, min=1)

    def __post_init__(self) -> None:
        if problem := remote_problem(
            self.listen, self.allow_remote, "take metrics from other hosts"
        ):
            raise Invalid(problem, key="listen")


SPECS: tuple[Spec, ...] = (
    counter("statsd_lines_total", "StatsD lines received."),
    counter("statsd_dropped_total", "StatsD lines dropped: unparsable, or past max_keys."),
    gauge("statsd_keys", "StatsD series held."),
)


def sanitize(name: str) -> str:
    name = _INVALID.sub("_", name)
    return f"_{name}" if name[:1].isdigit() else name


@dataclass
class _Series:
    kind: str  # "c", "g", "ms", "s"
    value: float = 0.0  # counter total, gauge value
    count: float = 0.0  # timers: cumulative
    total: float = 0.0  # timers: cumulative sum, seconds
    window: Window | None = None  # timers: this interval's sketch
    members: set[str] = field(default_factory=set)  # sets: this interval's values


Key = tuple[str, tuple[tuple[str, str], ...]]


class Statsd:
    """The server's state: lines in (`feed`), records out (`flush`)."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.series: dict[Key, _Series] = {}
        self.lines = 0
        self.dropped: dict[str, int] = {"invalid": 0, "max_keys": 0}

    def feed(self, datagram: bytes) -> None:
        for raw in datagram.split(b"\n"):
            if raw.strip():
                self.lines += 1
                if not self._line(raw.decode("utf-8", "replace").strip()):
                    self.dropped["invalid"] += 1

    def _line(self, line: str) -> bool:
        name, _, rest = line.partition(":")
        parts = rest.split("|")
        if not name or len(parts) < 2:
            return False
        value_text, kind = parts[0], parts[1]
        kind = "ms" if kind in ("h", "d") else kind
        if kind not in ("c", "g", "ms", "s"):
            return False
        rate, tags = 1.0, []
        for extra in parts[2:]:
            if extra.startswith("@"):
                try:
                    rate = float(extra[1:])
                except ValueError:
                    return False
                if not 0 < rate <= 1:
                    return False
            elif extra.startswith("#"):
                tags = [t.partition(":") for t in extra[1:].split(",")]
        value = 0.0
        if kind != "s":
            try:
                value = float(value_text)
            except ValueError:
                return False
            if not math.isfinite(value) or abs(value) > 1e300 or (kind == "ms" and value < 0):
                return False
        labels = tuple(sorted((sanitize(k), v) for k, sep, v in tags if k and sep and v))
        key = (sanitize(name), labels)
        series = self.series.get(key)
        if series is None:
            if metric_problem(key[0], dict(labels)):  # the hub would refuse the batch
                return False
            if len(self.series) >= self.max_keys:
                self.dropped["max_keys"] += 1
                return True
            series = self.series[key] = _Series(kind)
        elif series.kind != kind:
            return False  # one name, one type
        if kind == "s":
            if len(series.members) < MAX_SET:
                series.members.add(value_text)
            return True
        if kind == "c":
            series.value += value / rate
        elif kind == "g":
            signed = value_text[:1] in "+-"
            series.value = series.value + value if signed else value
        else:
            seconds = value / 1000
            if series.window is None:
                series.window = Window(1.0, 1.0)  # one bucket (all at 0.0): this interval
            series.window.add(0.0, True, seconds)
            series.count += 1 / rate
            series.total += seconds / rate
        return True

    def flush(self, ts: float) -> list[Record]:
        out: list[Record] = []
        for (name, pairs), series in self.series.items():
            labels = dict(pairs)
            if series.kind == "c":
                out.append(Metric(name, series.value, ts, labels, "counter"))
            elif series.kind == "g":
                out.append(Metric(name, series.value, ts, labels))
            elif series.kind == "s":
                out.append(Metric(name, len(series.members), ts, labels))
                series.members = set()
            else:
                if series.window is not None:
                    for q, value in series.window.quantiles(QUANTILES).items():
                        out.append(Metric(name, value, ts, {**labels, "quantile": f"{q:g}"}))
                    series.window = None
                out.append(Metric(f"{name}_count", series.count, ts, labels, "counter"))
                out.append(Metric(f"{name}_sum", series.total, ts, labels, "counter"))
        out.append(Metric("statsd_lines_total", self.lines, ts, type="counter"))
        for reason, n in self.dropped.items():
            out.append(Metric("statsd_dropped_total", n, ts, {"reason": reason}, "counter"))
        out.append(Metric("statsd_keys", len(self.series), ts))
        return out


class StatsdCollector(Collector):
    """collect() is a flush of the server's state."""

    name = "statsd"
    blocking = False
    specs = SPECS

    def __init__(self, state: Statsd) -> None:
        self.state = state

    def collect(self, ts: float, mono: float) -> Sequence[Record]:
        return self.state.flush(ts)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, state: Statsd) -> None:
        self.state = state

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.state.feed(data)


async def listen(section: StatsdSection, state: Statsd) -> asyncio.DatagramTransport:
    """Bind `section.listen` (UDP); OSError if it cannot be bound."""
    assert section.listen is not None
    host, port = split_host_port(section.listen)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(state), local_addr=(host, port)
    )
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError):  # room for bursts, up to net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    return transport
