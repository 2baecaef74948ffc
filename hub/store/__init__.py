"""The hub's storage interface. `Store.ingest` holds the delivery rules
once; a backend (today `hub/store/sqlite.py`) only implements primitives.

Exactly once: each (host, stream) keeps a mark, the highest sequence number
stored. Inside one backend transaction, `ingest` reads the mark, trims the
batch to the records above it, appends those and moves the mark. So a batch
at or below the mark (a replay after a lost reply or a crash, ours or the
agent's) is acknowledged again and stores nothing; an overlapping batch
stores only its new records. A batch that starts beyond the mark leaves a
gap: records the agent lost (its buffer was full), counted per stream.

Durable: a backend's transaction is on disk when it returns, and the hub
answers 2xx only after `ingest` returns (hub/ingest.py). A write the
backend cannot make (a full disk, a read-only or damaged file) raises
`Unwritable`: nothing of it is stored, the agent keeps the batch and sends
it again. The outcome of the latest write is kept in `last_write`, and
`probe` makes a tiny write when there was none lately: /healthz reports it.

Reads: `reader()` opens a `Reader` on its own connection, for another
thread. Readers see committed data only and never wait for, or hold up,
the writer. Their answers come in pages: at most `limit` items and
`next`, an opaque cursor to pass back as `after` for the following page
(None on the last page), so a client can read everything without one
giant answer.

Not thread-safe: the hub calls a store from one worker thread, and each
reader from one thread at a time.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

from agent.core.protocol import Batch


class Ingested(NamedTuple):
    last_seq: int  # the stream's mark after this batch: what the agent may forget
    stored: int  # records of this batch stored now (0 for a replay)


class MetricRow(NamedTuple):
    name: str
    labels: str  # JSON, keys sorted: one string per series
    ts: float
    value: float
    type: str


class EventRow(NamedTuple):
    ts: float
    kind: str  # log, alert, check, security, lifecycle
    body: str  # the whole record as JSON


class Unwritable(Exception):
    """The backend could not write (full disk, read-only or damaged file,
    I/O error): the transaction stored nothing; trying again later may work."""


class BadCursor(ValueError):
    """A page cursor (`after`) that this reader did not make."""


class Page(NamedTuple):
    items: list[dict[str, Any]]
    next: str | None  # pass back as `after` for the following page; None: the last


class WriteOutcome(NamedTuple):
    at: float  # time.monotonic() when the write ended
    error: str | None  # None: committed


class Reader(ABC):
    """Queries on a connection of their own (see the module's docstring)."""

    @abstractmethod
    def hosts(self) -> list[dict[str, Any]]:
        """Every host with first_seen, last_seen, agent_version, clock_offset
        and its streams (stream, last_seq, lost), by id."""

    @abstractmethod
    def metrics(
        self,
        host: str | None,
        name: str | None,
        since: float,
        until: float,
        limit: int,
        after: str | None = None,
    ) -> Page:
        """Series (host, name, labels, points [[ts, value], ...]) with points
        in [since, until]: at most `limit` points per page, in the order of
        (host, name, time). A series may continue on the next page: merge
        points by (host, name, labels). JSON has no NaN or infinity: a value
        that is not finite reads as None. Raises BadCursor for a bad `after`."""

    @abstractmethod
    def events(
        self,
        host: str | None,
        kind: str | None,
        since: float,
        limit: int,
        after: str | None = None,
    ) -> Page:
        """Events from `since` on, newest first: the record with host, ts,
        kind; at most `limit` per page (a page may end sooner to bound its
        size). A number in it that is not finite reads as None. Raises
        BadCursor for a bad `after`."""

    @abstractmethod
    def close(self) -> None: ...


class Store(ABC):
    last_write: WriteOutcome | None = None  # the latest write transaction's outcome

    def ingest(self, batch: Batch, received: float) -> Ingested:
        """Store what `batch` adds to its stream, durably; `received` is the
        hub's clock, for the host's last_seen and clock offset. Raises
        Unwritable when the backend cannot write."""
        with self._write():
            mark = self._mark(batch.host, batch.stream)
            fresh = batch.records[max(0, mark + 1 - batch.first) :] if batch.last > mark else []
            lost = max(0, batch.first - mark - 1) if fresh else 0
            metrics, events = rows(fresh)
            self._append(batch.host, batch.stream, metrics, events, max(mark, batch.last), lost)
            # a replay counts as contact too: the host is alive
            self._seen(batch.host, received, batch.agent, received - batch.sent)
        return Ingested(max(mark, batch.last), len(fresh))

    def probe(self) -> WriteOutcome:
        """A tiny durable write transaction, to learn whether the store can
        write; its outcome, which is also `last_write`."""
        try:
            with self._write():
                self._touch(time.time())
        except Unwritable:
            pass
        assert self.last_write is not None
        return self.last_write

    @contextmanager
    def _write(self) -> Iterator[None]:
        try:
            with self._transaction():
                yield
        except Unwritable as exc:
            self.last_write = WriteOutcome(time.monotonic(), str(exc) or type(exc).__name__)
            raise
        self.last_write = WriteOutcome(time.monotonic(), None)

    # -- what a backend implements -------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """One atomic, durable write: committed on exit, rolled back on
        error; raises Unwritable when the backend cannot write."""

    @abstractmethod
    def _mark(self, host: str, stream: str) -> int:
        """The stream's highest stored sequence number; 0 for a new stream."""

    @abstractmethod
    def _append(
        self,
        host: str,
        stream: str,
        metrics: list[MetricRow],
        events: list[EventRow],
        mark: int,
        lost: int,
    ) -> None:
        """Add the rows, set the stream's mark and add `lost` to its gap count."""

    @abstractmethod
    def _seen(self, host: str, received: float, agent_version: str, clock_offset: float) -> None:
        """Record contact from `host` (first_seen is kept from the first call)."""

    @abstractmethod
    def _touch(self, now: float) -> None:
        """The smallest write there is (the probe's), inside a transaction."""

    @abstractmethod
    def reader(self) -> Reader:
        """A new reader on its own connection (callable from any thread)."""

    @abstractmethod
    def close(self) -> None: ...


def rows(records: list[dict[str, Any]]) -> tuple[list[MetricRow], list[EventRow]]:
    """Records as rows. Numbers become floats: the columns are REAL, and an
    integer beyond 64 bits (msgpack allows up to 2**64 - 1) must not fail."""
    metrics, events = [], []
    for r in records:
        if r["kind"] == "metric":
            labels = json.dumps(r.get("labels", {}), sort_keys=True, separators=(",", ":"))
            metrics.append(
                MetricRow(
                    r["name"], labels, float(r["ts"]), float(r["value"]), r.get("type", "gauge")
                )
            )
        else:
            kind = r.get("type", "check") if r["kind"] == "event" else "check"
            events.append(EventRow(float(r["ts"]), kind, json.dumps(r, default=str)))
    return metrics, events
