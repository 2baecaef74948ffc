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

Limits (`Limits`, from `[hub]`), also applied here once for every backend:
- a record stamped more than `max_clock_skew` ahead of the hub's clock is
  stored at the hub's time of receipt and counted as the host's `skewed`
  records (a clock in 2100 would otherwise sit on top of every newest-first
  read). Old records are stored as they are: an agent back from a long
  outage delivers its backlog, and retention (`expire`) removes it in time.
- a batch that would give its host more than `max_new_series_per_batch`
  new series, or more than `max_series_per_host` in all, is refused whole
  with `SeriesLimit` (422 to the agent, which dead-letters it) and stores
  nothing; the stream's mark does not move.

Rollups (issue 14): each series also has 5-minute rollups (`STEP`): per
bucket the count, sum, min, max and last (the value of the newest point) of
its points. They are built at ingest, not by a later pass: `ingest` folds
the batch's stored points by (series, bucket) in Python and merges each
fold into its rollup row (`_roll`) in the same transaction as the points.
Why at ingest: a batch holds one or a few points per series, so this is one
upsert per series per batch, about what the `series` upsert that ingest
already makes costs, beside the three B-tree inserts per raw point.
bench/rollup.py measured 1.86 -> 2.31 ms per batch of 76 points (50 hosts,
2-core VM, fsync included): +0.45 ms, +6 us a point; a 2,000-agent fleet
(200 batches/s) pays ~9 % of one core for it. A pass would write a rollup
once per series per 5 minutes instead, but must re-read the raw points and
chase late ones. And
it is exact by construction: `ingest` stores each record exactly once
(above) and a rollup is merged from exactly the points stored, in the same
transaction, so a replay merges nothing, a crash merges nothing, and a late
point (an agent's backlog, hours old) lands in its old bucket like any
other. A pass over aged raw points would have to chase those late points
and make its watermark crash-safe; here raw points can expire at any time,
the rollups never depend on them again. A point whose value is not a
number (NaN) is stored raw but not counted in a rollup.

Retention (`expire`): raw points after `[hub] retention_raw`, events after
`retention_events`, rollups after `retention_rollup`, each a chunk at a
time. Databases written before rollups existed are rolled up once, a chunk
at a time by `expire` before it deletes anything (the backfill); until it
is done, reads add the raw points not yet rolled up (hub/store/sqlite.py).

Not thread-safe: the hub calls a store from one worker thread, and each
reader from one thread at a time.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

import structlog

from agent.core.protocol import Batch

log = structlog.get_logger()


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


class AlertState(NamedTuple):
    """An alert instance of a host as the hub keeps it (the `alerts` table)."""

    fingerprint: str
    name: str
    state: str  # pending | firing; resolved or inactive: forgotten
    severity: str
    since: float
    summary: str
    labels: str  # JSON


KNOWN_SETS = 4  # series sets remembered per host (Store._remember)
STEP = 300.0  # seconds: a rollup bucket; read steps are multiples of it
AGGREGATES = ("avg", "min", "max", "last", "count")  # what a rollup read can return


class Rollup(NamedTuple):
    """One series' points in one bucket, folded."""

    n: int  # points
    sum: float
    min: float
    max: float
    last_ts: float  # the newest point's time...
    last: float  # ...and its value (of equal times, the greatest: order-free)

    def merge(self, other: Rollup) -> Rollup:
        newer = (other.last_ts, other.last) > (self.last_ts, self.last)
        return Rollup(
            self.n + other.n,
            self.sum + other.sum,
            min(self.min, other.min),
            max(self.max, other.max),
            other.last_ts if newer else self.last_ts,
            other.last if newer else self.last,
        )

    def value(self, agg: str) -> float | None:
        """`agg` of these points (one of AGGREGATES); None if not finite."""
        if agg == "count":
            return float(self.n)
        v = {"avg": self.sum / self.n, "min": self.min, "max": self.max, "last": self.last}[agg]
        return v if math.isfinite(v) else None


def bucket(ts: float, step: float = STEP) -> float:
    """The start of the bucket of `step` seconds holding `ts` (UTC-aligned)."""
    return math.floor(ts / step) * step


def fold(metrics: list[MetricRow]) -> dict[tuple[str, str, float], Rollup]:
    """Points folded by (name, labels, bucket); NaN values are left out."""
    out: dict[tuple[str, str, float], Rollup] = {}
    floor = math.floor
    for m in metrics:
        v = m.value
        if v != v:  # NaN
            continue
        key = (m.name, m.labels, floor(m.ts / STEP) * STEP)  # bucket(), inlined: per point
        one = Rollup(1, v, v, v, m.ts, v)
        had = out.get(key)
        out[key] = one if had is None else had.merge(one)
    return out


class Prepared(NamedTuple):
    """A batch worked out for the store (`Store.prepare`): all of it, as
    if its stream's mark were below it (a replay or an overlap is worked
    out again in the store thread, from the part above the mark)."""

    batch: Batch
    received: float  # the hub's clock when it arrived
    kept: list[dict[str, Any]]  # its records, those too far ahead clamped
    skewed: int  # how many were
    metrics: list[MetricRow]
    events: list[EventRow]
    rollups: dict[tuple[str, str, float], Rollup]
    signature: bytes  # of its set of series (_signature); b"" without metrics


class Limits(NamedTuple):
    max_series_per_host: int = 20_000
    max_new_series_per_batch: int = 10_000
    max_clock_skew: float = 3600.0  # seconds ahead of the hub's clock
    retention: float = 7 * 86400.0  # seconds of raw data kept; 0: for ever


class SeriesLimit(Exception):
    """A batch that would exceed a host's series limits: refused, not stored."""


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


class BatchSpan(NamedTuple):
    """A stored batch's metric rows, for the forwarders (hub/forward)."""

    seq: int  # its stream's mark after it
    lo: int  # its rows: lo..hi, in the backend's row order
    hi: int
    received: float  # when it was committed


class Reader(ABC):
    """Queries on a connection of their own (see the module's docstring)."""

    @abstractmethod
    def hosts(self) -> list[dict[str, Any]]:
        """Every host with first_seen, last_seen, agent_version, clock_offset,
        skewed_records, refused_batches, interval (None: never announced),
        retired, revoked and its streams (stream, last_seq, lost), by id."""

    @abstractmethod
    def alerts(self) -> list[dict[str, Any]]:
        """Every host's pending and firing alerts: host, name, state,
        severity, since, summary, labels."""

    @abstractmethod
    def latest(self) -> Iterator[tuple[str, str, str, str, float]]:
        """Every series' newest value: (host, name, labels JSON, type, value),
        by name then host, for the hub's /metrics."""

    @abstractmethod
    def metrics(
        self,
        host: str | None,
        name: str | None,
        since: float,
        until: float,
        limit: int,
        after: str | None = None,
        step: float | None = None,
        agg: str = "avg",
    ) -> Page:
        """Series (host, name, labels, points [[ts, value], ...]) with points
        in [since, until]: at most `limit` points per page, in the order of
        (host, name, time). A series may continue on the next page: merge
        points by (host, name, labels). JSON has no NaN or infinity: a value
        that is not finite reads as None. Raises BadCursor for a bad `after`.

        With `step` (a multiple of STEP): from the rollups, one point per
        series and bucket of `step` seconds [bucket_start, agg of its points]
        for each bucket that overlaps [since, until] (whole buckets), in the
        order of (host, name, labels, time); a page never splits a bucket."""

    @abstractmethod
    def events(
        self,
        host: str | None,
        kind: str | None,
        since: float,
        limit: int,
        after: str | None = None,
        until: float = math.inf,
    ) -> Page:
        """Events from `since` on (up to `until`), newest first: the record
        with host, ts, kind; at most `limit` per page (a page may end sooner
        to bound its size). A number in it that is not finite reads as None.
        Raises BadCursor for a bad `after`."""

    # -- the web page's reads (hub/web): a backend may answer them faster ---

    def latest_of(
        self, names: Collection[str], host: str | None = None
    ) -> list[tuple[str, str, str, float]]:
        """The newest value of every series named in `names` (of `host`
        only, if given): (host, name, labels JSON, value)."""
        return [
            (h, name, labels, value)
            for h, name, labels, _, value in self.latest()
            if name in names and (host is None or h == host)
        ]

    def rollups_of(
        self, name: str, labels: str, since: float, until: float, agg: str = "avg"
    ) -> dict[str, list[list[float | None]]]:
        """One series (`name` with exactly `labels`, JSON) of every host,
        from the 5-minute rollups: host -> [[bucket_start, agg], ...]."""
        out: dict[str, list[list[float | None]]] = {}
        after = None
        while True:
            page = self.metrics(None, name, since, until, 10_000, after, STEP, agg)
            for s in page.items:
                if json.dumps(s["labels"], sort_keys=True, separators=(",", ":")) == labels:
                    out.setdefault(s["host"], []).extend(s["points"])
            if page.next is None:
                return out
            after = page.next

    @abstractmethod
    def close(self) -> None: ...

    # -- reports (hub/sla.py, hub/reports/) ------------------------------------

    @abstractmethod
    def events_between(
        self, kind: str, since: float, until: float
    ) -> Iterator[tuple[str, float, dict[str, Any]]]:
        """Every event of `kind` stamped in [since, until): (host, ts, the
        record), oldest first. A number in it that is not finite reads as None."""

    @abstractmethod
    def check_totals(self, since: float, until: float) -> list[tuple[str, str, int, float]]:
        """Runs of every check from the check_up rollups of the buckets that
        start in [since, until): (host, labels JSON, runs, passing runs), one
        row per series (a check whose labels changed has several)."""

    @abstractmethod
    def check_latencies(self, since: float, until: float) -> Iterator[tuple[str, str, float]]:
        """The latency of every passing check run stamped in [since, until),
        from the check events: (host, check, seconds), by host, check and
        latency (ascending)."""

    @abstractmethod
    def rollup_lasts(
        self, name: str, since: float, until: float
    ) -> Iterator[tuple[str, str, float, float]]:
        """The newest point of each rollup bucket of metric `name` starting
        in [since, until): (host, labels JSON, its time, its value), by host,
        labels and time. Buckets whose value is not a number are left out."""

    @abstractmethod
    def first_record(self, host: str, since: float, until: float) -> float | None:
        """The time of `host`'s first event or rollup bucket in [since,
        until) (a bucket's start: to 5 minutes), None if it has none."""

    # -- forwarding (hub/forward): what was committed, per stream, in order --

    def stream_marks(self) -> list[tuple[str, str, int]]:
        """Every stream's (host, stream, mark)."""
        raise NotImplementedError

    def batches_after(self, host: str, stream: str, seq: int, limit: int) -> list[BatchSpan]:
        """The stream's batches with metric rows whose mark is above `seq`, by mark."""
        raise NotImplementedError

    def batch_rows(self, first: int, last: int, limit: int) -> list[tuple[Any, ...]]:
        """Metric rows first..last that are still stored, in order, at most
        `limit`: (row, name, labels JSON, ts, value or None for NaN, type)."""
        raise NotImplementedError

    def forward_cursors(self, forward: str) -> dict[tuple[str, str], tuple[int, int]]:
        """What `forward` has delivered: (host, stream) -> (mark, row)."""
        raise NotImplementedError


class Store(ABC):
    last_write: WriteOutcome | None = None  # the latest write transaction's outcome
    remembers_series = True  # `_remember`: False where several hubs share the store
    limits: Limits = Limits()  # set per instance by the hub from its config

    def __init__(self) -> None:
        # each host's number of series, as committed: a host flooding new
        # series is refused after one lookup, not one per series
        self._totals: dict[str, int] = {}
        # batches refused for their series limits, not yet written down: the
        # next write, whoever's, adds them (a refusal costs no fsync)
        self._refused: dict[str, int] = {}
        # each host's last few series sets known to be stored (`_remember`),
        # under these limits
        self._known: dict[str, list[bytes]] = {}
        self._known_under = self.limits

    def ingest(self, batch: Batch, received: float) -> Ingested:
        """Store what `batch` adds to its stream, durably; `received` is the
        hub's clock, for the host's last_seen and clock offset. Raises
        SeriesLimit, storing nothing, for a batch over the series limits,
        and Unwritable when the backend cannot write."""
        [done] = self.ingest_many([self.prepare(batch, received)])
        if isinstance(done, Exception):
            raise done
        return done

    def prepare(self, batch: Batch, received: float) -> Prepared:
        """`batch`'s rows, rollups and series set, worked out from its
        records alone: callable from any thread, so the hub does it in its
        decode threads and the store thread only writes."""
        return self._prepared(batch, received, batch.records)

    def _prepared(self, batch: Batch, received: float, records: list[dict[str, Any]]) -> Prepared:
        kept, skewed = self._in_window(records, received)
        metrics, events = rows(kept)
        signature = _signature({(m.name, m.labels) for m in metrics}) if metrics else b""
        return Prepared(batch, received, kept, skewed, metrics, events, fold(metrics), signature)

    def ingest_many(self, batches: list[Prepared]) -> list[Ingested | Exception]:
        """Group commit: `ingest` of several batches in one transaction and
        one durable commit, each batch's outcome in its place. A batch that
        fails (SeriesLimit, or an error of its own) is rolled back to its
        savepoint and the others are stored; Unwritable (the commit, or the
        transaction lost) fails them all and stores none.

        Why: one fsync per batch capped a hub at about 550 batches/s; the
        batches that wait while one group commits share the next one
        (hub/ingest.py `Committer`). Batches are written in (host, stream,
        seq) order, so two hubs on one PostgreSQL mostly lock streams in the
        same order; a deadlock PostgreSQL still finds fails one batch, which
        its agent sends again."""
        if self.limits is not self._known_under:  # a reload: check every set again
            self._known.clear()
            self._known_under = self.limits
        out: list[Ingested | Exception] = [SeriesLimit("not stored")] * len(batches)
        order = sorted(range(len(batches)), key=lambda i: _position(batches[i].batch))
        known: list[tuple[str, bytes]] = []  # series sets to remember once committed
        try:
            with self._write():
                for i in order:
                    try:
                        with self._savepoint():
                            out[i] = self._ingest_one(batches[i], known)
                    except SeriesLimit as exc:
                        out[i] = exc
                    except Exception as exc:
                        if isinstance(exc, Unwritable) or self._fatal(exc):
                            raise  # the disk, the connection: nothing of the group stays
                        # one bad batch never blocks the others: it fails alone
                        host = batches[i].batch.host
                        log.error("ingest_failed", host=host, error=repr(exc)[:300])
                        out[i] = exc
                if self._refused:
                    self._count_refused(self._refused, time.time())
        except BaseException:
            self._totals.clear()  # counted for writes that did not happen: count again
            raise
        self._refused = {}  # committed
        for host, signature in known:
            self._remember(host, signature)
        return out

    def _ingest_one(self, p: Prepared, known: list[tuple[str, bytes]]) -> Ingested:
        """One batch inside the group's transaction (see the module's
        docstring for the rules)."""
        batch, received = p.batch, p.received
        host = batch.host
        mark = self._mark(host, batch.stream)
        if mark >= batch.first:  # a replay or an overlap: what is above the mark, again
            fresh = batch.records[mark + 1 - batch.first :] if batch.last > mark else []
            p = self._prepared(batch, received, fresh)
        lost = max(0, batch.first - mark - 1) if p.kept else 0
        new = 0
        if p.metrics and p.signature not in self._known.get(host, ()):
            total = self._series_total(host)
            new = self._check_series(host, {(m.name, m.labels) for m in p.metrics}, total)
        self._append(host, batch.stream, p.metrics, p.events, max(mark, batch.last), lost)
        if states := alert_states(p.kept):
            self._alert_states(host, states)
        if p.rollups:
            self._roll(host, p.rollups)
        # a replay counts as contact too: the host is alive
        self._seen(host, received, batch.agent, received - batch.sent, p.skewed, batch.interval)
        if new:
            self._totals[host] += new  # the group's failure clears it (not committed)
        if p.signature:
            known.append((host, p.signature))
        return Ingested(max(mark, batch.last), len(p.kept))

    def _remember(self, host: str, signature: bytes) -> None:
        """`host` has every series of the set `signature` names (committed):
        its next batch of the same set skips the series check. A few sets
        per host (host metrics every 10 s, checks every minute, ...). Not on
        a store that hubs share: another hub's retention may delete them."""
        if not self.remembers_series:
            return
        sets = self._known.setdefault(host, [])
        if signature not in sets:
            sets.append(signature)
            del sets[:-KNOWN_SETS]

    def lead(self, job: str) -> bool:
        """Whether this hub runs `job` ("liveness", "retention", "reports",
        "forward:NAME") now: the jobs that must run once per fleet. A store of one hub:
        always; a shared one (hub/store/postgres.py): the hub holding the
        job's lock. May block briefly: call it off the event loop."""
        return True

    def note_refused(self, host: str) -> None:
        """Count a batch of `host` refused for its series limits (in the
        store's thread, like every call)."""
        self._refused[host] = self._refused.get(host, 0) + 1

    def _in_window(
        self, records: list[dict[str, Any]], received: float
    ) -> tuple[list[dict[str, Any]], int]:
        """Records, those stamped too far ahead clamped to the hub's clock;
        and how many were."""
        ahead = received + self.limits.max_clock_skew
        if all(r["ts"] <= ahead for r in records):
            return records, 0
        kept = [r if r["ts"] <= ahead else {**r, "ts": received} for r in records]
        return kept, sum(r["ts"] > ahead for r in records)

    def _series_total(self, host: str) -> int:
        if host not in self._totals:
            self._totals[host] = self._series_count(host)
        return self._totals[host]

    def _check_series(self, host: str, series: set[tuple[str, str]], total: int) -> int:
        """How many of `series` are new; SeriesLimit if too many. The lookup
        stops as soon as the verdict is certain."""
        limits = self.limits
        room = min(limits.max_new_series_per_batch, limits.max_series_per_host - total)
        new = self._new_series(host, series, stop_after=room)
        if new > limits.max_new_series_per_batch:
            raise SeriesLimit(
                f"this batch adds over {limits.max_new_series_per_batch} new series for host"
                f" {host!r}; at most {limits.max_new_series_per_batch} per batch"
                " (max_new_series_per_batch)"
            )
        if new > room:
            raise SeriesLimit(
                f"host {host!r} has {total} series and this batch adds more than {room}; at most"
                f" {limits.max_series_per_host} (max_series_per_host)"
            )
        return new

    def expire(
        self,
        before: float,
        limit: int,
        events_before: float | None = None,
        rollups_before: float = -math.inf,
    ) -> int:
        """Delete up to `limit` rows: metric points stamped before `before`,
        series with no point since, events before `events_before` (default:
        `before`) and rollups of buckets that start before `rollups_before`;
        first, roll up a chunk of the backfill if one is due (see the
        module's docstring). How many rows were deleted or rolled up. Called
        again while it returns `limit`, between ingests: one call is short."""
        self._totals.clear()  # series may go: count them again
        self._known.clear()
        with self._write():
            return self._expire(
                before, limit, before if events_before is None else events_before, rollups_before
            )

    def probe(self) -> WriteOutcome:
        """A tiny durable write transaction, to learn whether the store can
        write; its outcome, which is also `last_write`."""
        try:
            with self._write():
                self._touch(time.time())
                if self._refused:
                    self._count_refused(self._refused, time.time())
            self._refused = {}
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
    def _savepoint(self) -> AbstractContextManager[None]:
        """Inside the transaction: on error, undo what was written since
        entering, and re-raise; the transaction goes on."""

    @abstractmethod
    def _fatal(self, exc: Exception) -> bool:
        """Whether `exc` leaves the transaction unusable or the store unable
        to write (then `_transaction` raises Unwritable for it)."""

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
    def _seen(
        self,
        host: str,
        received: float,
        agent_version: str,
        clock_offset: float,
        skewed: int,
        interval: float | None,
    ) -> None:
        """Record contact from `host` (first_seen is kept from the first call),
        add `skewed` to its count of records outside the time window, and
        keep the collection interval it announced (None: keep the last)."""

    def hub_alert(
        self,
        host: str,
        name: str,
        state: str,
        severity: str,
        since: float,
        summary: str,
        labels: dict[str, str],
        now: float,
    ) -> None:
        """A transition of one of the hub's own alerts (HostSilent): the
        host's alert state, and an alert event in its history."""
        fingerprint = f"hub:{name}:{host}"
        record = {
            "kind": "event",
            "type": "alert",
            "ts": now,
            "message": f"{name} {state}: {summary}",
            "severity": severity,
            "fields": {"rule": name, "state": state, "labels": labels, "since": since,
                       "fingerprint": fingerprint, "source": "hub"},
        }  # fmt: skip
        _, events = rows([record])
        state_row = AlertState(
            fingerprint, name, state, severity, since, summary, json.dumps(labels)
        )
        with self._write():
            self._append_events(host, events)
            self._alert_states(host, [state_row])

    def set_flag(self, host: str, flag: str, on: bool) -> None:
        """`retired` (no liveness alerts) or `revoked` (token refused) for `host`."""
        with self._write():
            self._flag(host, flag, int(on), time.time())

    @abstractmethod
    def _alert_states(self, host: str, states: list[AlertState]) -> None:
        """Keep pending and firing ones as `host`'s current alerts; forget
        the others."""

    @abstractmethod
    def _append_events(self, host: str, events: list[EventRow]) -> None:
        """Add event rows of `host` (no stream, no mark)."""

    @abstractmethod
    def _flag(self, host: str, column: str, value: int, now: float) -> None:
        """Set `host`'s retired or revoked column, creating its row if need be."""

    @abstractmethod
    def _count_refused(self, refused: dict[str, int], now: float) -> None:
        """Add to each host's count of batches refused for its series limits."""

    @abstractmethod
    def _new_series(self, host: str, series: set[tuple[str, str]], stop_after: int) -> int:
        """How many of `series` (name, labels JSON) `host` does not have yet;
        counting may stop once the count exceeds `stop_after`."""

    @abstractmethod
    def _series_count(self, host: str) -> int:
        """How many series `host` has."""

    @abstractmethod
    def _roll(self, host: str, rollups: dict[tuple[str, str, float], Rollup]) -> None:
        """Merge each (name, labels, bucket) fold into its rollup row."""

    @abstractmethod
    def _expire(
        self, before: float, limit: int, events_before: float, rollups_before: float
    ) -> int:
        """`expire`'s backfill and deletions, inside its transaction."""

    @abstractmethod
    def _touch(self, now: float) -> None:
        """The smallest write there is (the probe's), inside a transaction."""

    @abstractmethod
    def reader(self) -> Reader:
        """A new reader on its own connection (callable from any thread)."""

    @abstractmethod
    def close(self) -> None: ...

    def forward_commit(self, forward: str, cursors: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Note durably what `forward` has delivered: (host, stream) -> (mark,
        row), once the receiver took it (hub/forward)."""
        with self._write():
            self._forward_cursors(forward, cursors)

    def _forward_cursors(
        self, forward: str, cursors: dict[tuple[str, str], tuple[int, int]]
    ) -> None:
        raise NotImplementedError


def _position(batch: Batch) -> tuple[str, str, int]:
    return batch.host, batch.stream, batch.first


def _signature(series: set[tuple[str, str]]) -> bytes:
    """A digest of a set of series (name, labels JSON), whatever its order.
    Each entry is length-prefixed: a name may hold any character, and a
    name of "p", NUL, "{}", newline, "r" must not read as the series p and r."""
    text = "\n".join(sorted(f"{len(name)}:{name}{labels}" for name, labels in series))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def newest(metrics: list[MetricRow]) -> dict[tuple[str, str], MetricRow]:
    """Each series' newest row among `metrics`, by (name, labels): what the
    `series` table keeps (of equal times, the later row)."""
    out: dict[tuple[str, str], MetricRow] = {}
    for m in metrics:
        key = (m.name, m.labels)
        if key not in out or m.ts >= out[key].ts:
            out[key] = m
    return out


def rows(records: list[dict[str, Any]]) -> tuple[list[MetricRow], list[EventRow]]:
    """Records as rows. Numbers become floats: the columns are REAL, and an
    integer beyond 64 bits (msgpack allows up to 2**64 - 1) must not fail."""
    metrics, events = [], []
    for r in records:
        if r["kind"] == "metric":
            labels = _labels_json(r.get("labels", {}))
            metrics.append(
                MetricRow(
                    r["name"], labels, float(r["ts"]), float(r["value"]), r.get("type", "gauge")
                )
            )
        else:
            kind = r.get("type", "check") if r["kind"] == "event" else "check"
            events.append(EventRow(float(r["ts"]), kind, json.dumps(r, default=str)))
    return metrics, events


_LABELS: dict[tuple[tuple[str, str], ...], str] = {}  # label sets as JSON, by their items
_LABELS_MOST = 8192  # a fleet shares most label sets (cpu, mountpoint, check)
_LABELS_LONGEST = 512  # characters of JSON: the cache holds at most 8192 x 512


def _labels_json(labels: dict[str, str]) -> str:
    """`labels` as JSON, keys sorted: one string per series. Remembered:
    encoding was a fifth of a batch's time in the store."""
    key = tuple(labels.items())
    text = _LABELS.get(key)
    if text is None:
        if len(_LABELS) >= _LABELS_MOST:
            _LABELS.clear()
        text = json.dumps(labels, sort_keys=True, separators=(",", ":"))
        if len(text) <= _LABELS_LONGEST:  # a label may be 1 MiB: those are not kept
            _LABELS[key] = text
    return text


def alert_states(records: list[dict[str, Any]]) -> list[AlertState]:
    """The alert transitions among an agent's records (events of type
    "alert", agent/alerts/engine.py), as the states they leave, in order."""
    out = []
    for r in records:
        if r["kind"] != "event" or r.get("type") != "alert":
            continue
        fields = r.get("fields")
        if not isinstance(fields, dict) or not isinstance(fields.get("fingerprint"), str):
            continue
        labels = fields.get("labels") if isinstance(fields.get("labels"), dict) else {}
        since = fields.get("since")
        out.append(
            AlertState(
                fields["fingerprint"][:200],
                str(fields.get("rule", "?"))[:200],
                str(fields.get("state", "?")),
                str(r.get("severity", "?"))[:20],
                float(since) if isinstance(since, (int, float)) else float(r["ts"]),
                str(r.get("message", ""))[:1000],
                json.dumps(labels, default=str),
            )
        )
    return out
