"""The small protocol every collector follows.

A collector is one module that only produces records: it declares its
`name`, the metrics it can emit (`specs`, used for `/metrics` help text and
checked against docs/metrics.md by a test), and `collect()`. It knows
nothing of scheduling, buffering, shipping or alerting.

`collect(ts, mono)` receives the wall-clock time to stamp records with and
a monotonic time for rate computations, so tests can drive it step by step.
Collectors whose `collect` can block (file systems) keep `blocking = True`
and the scheduler runs them in a worker thread, where a hang is timed out
without stalling the event loop; an `async def collect` is awaited on the
loop. A blocking collector that can tell, cheaply and before it starts, that
this run cannot block (the disk collector, when every file system it will
ask is answered from memory) says so in `runs_inline`: a thread handoff
costs more than the run.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import ClassVar, TypeVar

from agent.core.records import Record, Spec, counter, gauge
from agent.core.registry import Registry

__all__ = ["HOST_COLLECTORS", "Collector", "Spec", "any_of", "counter", "gauge", "host_collector"]


class Collector:
    """A source of records. Host collectors also declare `Options` (a frozen
    config dataclass, or None) and take `(source, options)`."""

    name: str  # a class attribute, or per instance (one check each)
    specs: ClassVar[tuple[Spec, ...]] = ()
    blocking: ClassVar[bool] = True

    def collect(self, ts: float, mono: float) -> Sequence[Record] | Awaitable[Sequence[Record]]:
        raise NotImplementedError

    def runs_inline(self) -> bool:
        """Whether this run goes on the event loop (asked before each run)."""
        return not self.blocking

    def problem(self) -> str | None:
        """What is wrong now though `collect` succeeds (a long-running source
        that cannot commit or is stuck): shown as the collector failing."""
        return None

    def close(self) -> None:
        """Let go of what `collect` keeps open between runs (a scrape's
        connection). Called when its schedule ends: a stop or a reload."""


# Host metric groups by name, in the order `vigil once` shows them (the
# import order in collectors/__init__.py). Their names are what `[host]
# enabled` accepts; a collector's `Options` class, if any, is its
# `[host.NAME]` table, handed to its constructor: `cls(source, options)`.
HOST_COLLECTORS: Registry[type[Collector]] = Registry(
    "host collector", lambda cls: getattr(cls, "Options", None)
)


C = TypeVar("C", bound=Collector)


def host_collector(cls: type[C]) -> type[C]:
    """Class decorator: register a host collector under its `name`."""
    HOST_COLLECTORS.add(cls.name, cls)
    return cls


def any_of(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One compiled regex matching any of `patterns` (None when there are none)."""
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
