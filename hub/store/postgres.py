"""The shared store: PostgreSQL, for several hubs on one database (issue 15,
item 2; docs/hub.md, "Several hubs on PostgreSQL"). Loaded only with
`[store] backend = "postgres"`: psycopg stays out of a SQLite hub's memory.

The exactly-once rule is `Store.ingest`'s (hub/store/__init__.py); this
module implements its primitives. What several hubs change:

- Two hubs may ingest one stream at once (an agent failing over in the
  middle of a batch, a replay reaching the other hub). `_mark` makes the
  stream's row exist (INSERT ... ON CONFLICT DO NOTHING) and reads it
  `FOR UPDATE`: the second transaction waits for the first to commit and
  then reads the mark the first moved, so it trims the batch to nothing.
  Every other write is an upsert that merges (rollups: count and sum
  added, min, max, the newest last), made in key order so two hubs writing
  the same host's series lock their rows in the same order.
- A deadlock, a serialization failure or a lost connection is `Unwritable`:
  the transaction stored nothing, the agent keeps the batch and sends it
  again (to this hub or another); the next transaction reconnects.
- Jobs that must run once per fleet (liveness and HostSilent, retention,
  the daily report) ask `lead(job)`: a session-level advisory lock
  (`pg_try_advisory_lock`) on a connection of its own. The hub holding it
  runs the job; when that hub dies its session ends, the lock is free, and
  the next hub that asks takes over. TCP keepalives on that session
  (10 s idle, 3 probes 5 s apart, both ends) bound how long a hub cut
  off from the network keeps it.
- Migrations (`MIGRATIONS`) run at start inside one transaction holding
  `pg_advisory_xact_lock`: hubs starting together on an empty database
  migrate it once, the others wait and find it done.

Readers reuse the SQLite reader's queries (hub/store/sqlite.py) through a
small adapter (`?` placeholders become `%s`); the few that use SQLite's own
functions are written here. Columns keep SQLite's meaning: text compared
byte-wise (`COLLATE "C"`), NaN stored as NULL, `rowid` an identity column.
PostgreSQL text cannot hold NUL: a NUL in a metric name, an event type or
an alert's fields is stored as U+FFFD (labels and event bodies are JSON,
where it is escaped).

Not thread-safe, as every store: one store thread; each reader on one
thread at a time; `lead` from any thread (it has its own lock).
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
import zlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
import structlog
from psycopg import conninfo

from hub.store import AlertState, EventRow, MetricRow, Rollup, Store, Unwritable, newest
from hub.store.sqlite import SQLiteReader

log = structlog.get_logger()

LOCK_CLASS = 0x5647  # "VG": the first key of every advisory lock of ours
MIGRATE_LOCK = 0
JOBS = {"liveness": 1, "retention": 2, "reports": 3}  # once-per-fleet jobs: their locks
FORWARD_CLASS = 0x5648  # a forward's lock: (this, a hash of its name), see `lock_key`

_TEXT = 'TEXT COLLATE "C" NOT NULL'
SCHEMA_V1 = f"""
CREATE TABLE hosts (
    id {_TEXT} PRIMARY KEY,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    agent_version {_TEXT},
    clock_offset DOUBLE PRECISION NOT NULL,
    skewed BIGINT NOT NULL DEFAULT 0,
    refused BIGINT NOT NULL DEFAULT 0,
    interval DOUBLE PRECISION,
    retired INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE streams (
    host {_TEXT},
    stream {_TEXT},
    last_seq BIGINT NOT NULL,
    lost BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (host, stream)
);
CREATE TABLE metrics (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host {_TEXT},
    name {_TEXT},
    labels {_TEXT},
    ts DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION,
    type {_TEXT}
);
CREATE INDEX metrics_by_series ON metrics (host, name, ts, rowid);
CREATE INDEX metrics_by_time ON metrics (ts);
CREATE TABLE events (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host {_TEXT},
    ts DOUBLE PRECISION NOT NULL,
    kind {_TEXT},
    body TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (host, ts, rowid);
CREATE INDEX events_by_ts ON events (ts, rowid);
CREATE INDEX events_by_kind ON events (kind, ts) WHERE kind IN ('alert', 'security', 'log');
CREATE TABLE series (
    host {_TEXT},
    name {_TEXT},
    labels {_TEXT},
    last_ts DOUBLE PRECISION NOT NULL,
    last_value DOUBLE PRECISION,
    type TEXT COLLATE "C",
    PRIMARY KEY (host, name, labels)
);
CREATE TABLE alerts (
    host {_TEXT},
    fingerprint {_TEXT},
    name {_TEXT},
    state {_TEXT},
    severity {_TEXT},
    since DOUBLE PRECISION NOT NULL,
    summary {_TEXT},
    labels {_TEXT},
    PRIMARY KEY (host, fingerprint)
);
CREATE TABLE rollups (
    host {_TEXT},
    name {_TEXT},
    labels {_TEXT},
    bucket DOUBLE PRECISION NOT NULL,
    n BIGINT NOT NULL,
    total DOUBLE PRECISION,
    lo DOUBLE PRECISION NOT NULL,
    hi DOUBLE PRECISION NOT NULL,
    last_ts DOUBLE PRECISION NOT NULL,
    last DOUBLE PRECISION,
    PRIMARY KEY (host, name, labels, bucket)
);
CREATE INDEX rollups_by_time ON rollups (bucket);
-- always empty here (the SQLite reader's queries look at it): a PostgreSQL
-- store never held raw points that were not rolled up
CREATE TABLE backfill (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    done BIGINT NOT NULL,
    upto BIGINT NOT NULL
);
CREATE TABLE probe (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    at DOUBLE PRECISION NOT NULL
);
"""

# Forwarding (hub/forward): each batch's metric rows are one contiguous rowid
# range, as on SQLite, so a forward's cursor is (the stream's mark sent,
# the rowid sent of the next batch) on both stores. Concurrent hubs
# interleave identity values, so a batch takes its range from a sequence
# that steps by RANGE (nextval: never the same for two transactions, never
# given again, even after a rollback) and numbers its rows base, base+1, ...
# RANGE is above protocol.MAX_RECORDS: a batch always fits in its range.
RANGE = 1 << 20
SCHEMA_V2 = f"""
CREATE SEQUENCE metric_ranges AS BIGINT INCREMENT BY {RANGE};
SELECT setval('metric_ranges', coalesce((SELECT max(rowid) FROM metrics), 0) + 1, false);
CREATE TABLE batches (
    host {_TEXT},
    stream {_TEXT},
    seq BIGINT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (host, stream, seq)
);
CREATE INDEX batches_by_time ON batches (received);
CREATE TABLE forward_cursors (
    forward {_TEXT},
    host {_TEXT},
    stream {_TEXT},
    seq BIGINT NOT NULL,
    row BIGINT NOT NULL,
    PRIMARY KEY (forward, host, stream)
);
"""

# (version, what it does): applied in order, each once, at start. Add to the end.
MIGRATIONS: list[tuple[int, str]] = [(1, SCHEMA_V1), (2, SCHEMA_V2)]


def lock_key(job: str) -> tuple[int, int]:
    """The advisory lock of a once-per-fleet job: one of JOBS, or
    "forward:NAME" (each forward runs on one hub at a time, hub/forward)."""
    if job.startswith("forward:"):
        return FORWARD_CLASS, zlib.crc32(job.encode("utf-8", "surrogatepass")) & 0x7FFFFFFF
    return LOCK_CLASS, JOBS[job]


def describe(dsn: str) -> str:
    """`dsn` without its password, for logs and errors."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(an unparsable dsn)"
    return " ".join(f"{k}={v}" for k, v in sorted(parts.items()) if k != "password")


def _nul(text: str) -> str:
    return text if "\x00" not in text else text.replace("\x00", "\ufffd")


def _real(value: float) -> float | None:
    """SQLite's REAL: NaN is NULL."""
    return None if math.isnan(value) else value


class Connector:
    """Opens connections to `dsn` (autocommit: transactions are explicit)."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.dsn, self.timeout = dsn, timeout

    def connect(self, keepalive: bool = False) -> psycopg.Connection[Any]:
        """A new connection; Unwritable (naming the server, never the
        password) when there is none to be had."""
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, round(self.timeout)),
                application_name="vigil-hub",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise Unwritable(f"cannot connect to PostgreSQL ({describe(self.dsn)}): {exc}") from exc
        if keepalive:  # the server's end too: a lock of a hub cut off is freed in ~25 s
            conn.execute(
                "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;"
                " SET tcp_keepalives_count = 3"
            )
        return conn


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply what `MIGRATIONS` has beyond the database's version, once
    across hubs; the version now. OSError for a database newer than us."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, MIGRATE_LOCK))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        known = MIGRATIONS[-1][0]
        if current > known:
            raise OSError(
                f"the database has schema version {current}; this hub knows up to {known}:"
                " upgrade this hub"
            )
        for version, sql in MIGRATIONS:
            if version > current:
                conn.execute(cast(Any, sql))
                conn.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, time.time()))
                log.info("store_migrated", backend="postgres", version=version)
                current = version
        return current


_CANNOT_WRITE = (
    psycopg.errors.DiskFull,
    psycopg.errors.OutOfMemory,
    psycopg.errors.ReadOnlySqlTransaction,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CannotConnectNow,
)


class PostgresStore(Store):
    remembers_series = False  # several hubs: another's retention may delete them

    def __init__(self, dsn: str, pool_size: int = 4, connect_timeout: float = 10.0) -> None:
        super().__init__()
        self.connector = Connector(dsn, connect_timeout)
        self.pool_size = pool_size
        try:
            self.conn: psycopg.Connection[Any] | None = self.connector.connect()
            self.version = migrate(self.conn)
        except (Unwritable, psycopg.Error) as exc:
            raise OSError(str(exc)) from exc
        self._idle: list[psycopg.Connection[Any]] = []  # readers' connections, for reuse
        self._idle_lock = threading.Lock()
        self._leases: psycopg.Connection[Any] | None = None  # holds the advisory locks
        self._held: set[str] = set()
        self._lease_lock = threading.Lock()

    @property
    def db(self) -> psycopg.Connection[Any]:
        """The writer's connection, opened again if it was lost."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.conn = self.connector.connect()
        return self.conn

    def close(self) -> None:
        for conn in [self.conn, self._leases, *self._idle]:
            if conn is not None:
                conn.close()
        self._idle.clear()

    # -- once per fleet -------------------------------------------------------------

    def lead(self, job: str) -> bool:
        with self._lease_lock:
            try:
                if self._leases is None or self._leases.closed or self._leases.broken:
                    self._held.clear()  # the session ended: its locks with it
                    self._leases = self.connector.connect(keepalive=True)
                if job in self._held:
                    self._leases.execute("SELECT 1")  # still our session?
                    return True
                row = self._leases.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", lock_key(job)
                ).fetchone()
            except (Unwritable, psycopg.Error) as exc:
                if self._held:
                    log.warning("store_lead_lost", jobs=sorted(self._held), error=str(exc)[:200])
                self._held.clear()
                if self._leases is not None:
                    self._leases.close()
                self._leases = None
                return False
            if row and row[0]:
                self._held.add(job)
                log.info("store_lead_taken", job=job)
                return True
            return False

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self.db.transaction():
                yield
        except psycopg.OperationalError as exc:
            # lost connection, deadlock, serialization failure, full disk,
            # server shutting down: nothing was stored; try again later
            raise Unwritable(f"PostgreSQL: {str(exc).strip()[:300]}") from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise Unwritable(f"PostgreSQL: {str(exc).strip()[:300]}") from exc

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        with self.db.transaction():  # nested: a savepoint, rolled back on error
            yield

    def _fatal(self, exc: Exception) -> bool:
        # the connection is gone, or the server cannot write at all: the
        # group fails (Unwritable); anything else (a deadlock, a value over
        # an index's limit) was rolled back to the batch's savepoint and
        # fails that batch alone
        if self.db.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            return True
        return isinstance(exc, _CANNOT_WRITE)

    def _touch(self, now: float) -> None:
        self.db.execute(
            "INSERT INTO probe VALUES (0, %s) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            (now,),
        )

    def _mark(self, host: str, stream: str) -> int:
        db, stream = self.db, _nul(stream)
        # the row exists (a new stream: made here, or waited for while the
        # hub that made it commits), then is locked until this commits
        db.execute(
            "INSERT INTO streams VALUES (%s, %s, 0, 0) ON CONFLICT DO NOTHING", (host, stream)
        )
        row = db.execute(
            "SELECT last_seq FROM streams WHERE host = %s AND stream = %s FOR UPDATE",
            (host, stream),
        ).fetchone()
        return int(row[0]) if row else 0

    def _append(
        self,
        host: str,
        stream: str,
        metrics: list[MetricRow],
        events: list[EventRow],
        mark: int,
        lost: int,
    ) -> None:
        db = self.db
        with db.cursor() as cur:
            if metrics:
                # the batch's rows: one range of rowids (see RANGE), named in batches
                row = db.execute("SELECT nextval('metric_ranges')").fetchone()
                assert row is not None and len(metrics) <= RANGE
                lo = int(row[0])
                cur.executemany(
                    "INSERT INTO metrics (rowid, host, name, labels, ts, value, type)"
                    " OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (lo + i, host, _nul(m.name), m.labels, m.ts, _real(m.value), m.type)
                        for i, m in enumerate(metrics)
                    ],
                )
                cur.execute(
                    "INSERT INTO batches VALUES (%s, %s, %s, %s, %s, %s)",
                    (host, _nul(stream), mark, lo, lo + len(metrics) - 1, time.time()),
                )
            self._append_events(host, events)
            latest = newest(metrics)
            if latest:
                cur.executemany(
                    "INSERT INTO series AS s (host, name, labels, last_ts, last_value, type)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (host, name, labels) DO UPDATE"
                    " SET last_value = CASE WHEN excluded.last_ts >= s.last_ts"
                    " THEN excluded.last_value ELSE s.last_value END,"
                    " type = excluded.type, last_ts = GREATEST(s.last_ts, excluded.last_ts)",
                    [
                        (host, _nul(m.name), m.labels, m.ts, _real(m.value), m.type)
                        for _, m in sorted(latest.items())  # key order: no deadlock
                    ],
                )
        db.execute(
            "UPDATE streams SET last_seq = GREATEST(last_seq, %s), lost = lost + %s"
            " WHERE host = %s AND stream = %s",
            (mark, lost, host, _nul(stream)),
        )

    def _seen(
        self,
        host: str,
        received: float,
        agent_version: str,
        clock_offset: float,
        skewed: int,
        interval: float | None,
    ) -> None:
        self.db.execute(
            "INSERT INTO hosts AS h (id, first_seen, last_seen, agent_version, clock_offset,"
            " skewed, interval) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE"
            " SET last_seen = GREATEST(h.last_seen, excluded.last_seen),"
            " agent_version = excluded.agent_version, clock_offset = excluded.clock_offset,"
            " skewed = h.skewed + excluded.skewed,"
            " interval = coalesce(excluded.interval, h.interval)",
            (host, received, received, _nul(agent_version), clock_offset, skewed, interval),
        )

    def _append_events(self, host: str, events: list[EventRow]) -> None:
        if events:
            with self.db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO events (host, ts, kind, body) VALUES (%s, %s, %s, %s)",
                    [(host, e.ts, _nul(e.kind), e.body) for e in events],
                )

    def _alert_states(self, host: str, states: list[AlertState]) -> None:
        for a in states:
            a = a._replace(
                fingerprint=_nul(a.fingerprint), name=_nul(a.name), state=_nul(a.state),
                severity=_nul(a.severity), summary=_nul(a.summary),
            )  # fmt: skip
            if a.state in ("pending", "firing"):
                self.db.execute(
                    "INSERT INTO alerts VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (host, fingerprint) DO UPDATE SET state = excluded.state,"
                    " severity = excluded.severity, since = excluded.since,"
                    " summary = excluded.summary, labels = excluded.labels",
                    (host, *a),
                )
            else:
                self.db.execute(
                    "DELETE FROM alerts WHERE host = %s AND fingerprint = %s",
                    (host, a.fingerprint),
                )

    def _flag(self, host: str, column: str, value: int, now: float) -> None:
        assert column in ("retired", "revoked")  # our names, never input
        self.db.execute(
            cast(
                Any,
                "INSERT INTO hosts (id, first_seen, last_seen, agent_version, clock_offset,"
                f" {column}) VALUES (%s, %s, %s, '', 0, %s)"
                f" ON CONFLICT (id) DO UPDATE SET {column} = excluded.{column}",
            ),
            (host, now, now, value),
        )

    def _count_refused(self, refused: dict[str, int], now: float) -> None:
        with self.db.cursor() as cur:
            cur.executemany(
                "INSERT INTO hosts AS h (id, first_seen, last_seen, agent_version, clock_offset,"
                " refused) VALUES (%s, %s, %s, '', 0, %s)"
                " ON CONFLICT (id) DO UPDATE SET refused = h.refused + excluded.refused",
                [(host, now, now, n) for host, n in sorted(refused.items())],
            )

    def _new_series(self, host: str, series: set[tuple[str, str]], stop_after: int) -> int:
        names, labels = zip(*((_nul(n), lab) for n, lab in series)) if series else ((), ())
        row = self.db.execute(
            "SELECT count(*) FROM unnest(%s::text[], %s::text[]) AS b (name, labels)"
            " WHERE NOT EXISTS (SELECT 1 FROM series AS s WHERE s.host = %s"
            ' AND s.name = b.name COLLATE "C" AND s.labels = b.labels COLLATE "C")',
            (list(names), list(labels), host),
        ).fetchone()
        return int(row[0]) if row else 0

    def _series_count(self, host: str) -> int:
        row = self.db.execute("SELECT count(*) FROM series WHERE host = %s", (host,)).fetchone()
        return int(row[0]) if row else 0

    def _roll(self, host: str, rollups: dict[tuple[str, str, float], Rollup]) -> None:
        if not rollups:
            return
        with self.db.cursor() as cur:
            cur.executemany(
                "INSERT INTO rollups AS r VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (host, name, labels, bucket) DO UPDATE SET"
                " n = r.n + excluded.n, total = r.total + excluded.total,"
                " lo = LEAST(r.lo, excluded.lo), hi = GREATEST(r.hi, excluded.hi),"
                " last = CASE WHEN (excluded.last_ts, excluded.last) > (r.last_ts, r.last)"
                " THEN excluded.last ELSE r.last END,"
                " last_ts = GREATEST(r.last_ts, excluded.last_ts)",
                [
                    (host, _nul(name), labels, b, r.n, _real(r.sum), r.min, r.max, r.last_ts,
                     _real(r.last))
                    for (name, labels, b), r in sorted(rollups.items())  # key order
                ],
            )  # fmt: skip

    def _expire(
        self, before: float, limit: int, events_before: float, rollups_before: float
    ) -> int:
        gone = 0
        for table, column, cutoff, key in (
            ("metrics", "ts", before, "rowid"),
            ("events", "ts", events_before, "rowid"),
            ("rollups", "bucket", rollups_before, "host, name, labels, bucket"),
            ("series", "last_ts", before, "host, name, labels"),
        ):
            cur = self.db.execute(
                cast(
                    Any,
                    f"DELETE FROM {table} WHERE ({key}) IN"
                    f" (SELECT {key} FROM {table} WHERE {column} < %s LIMIT %s)",
                ),
                (cutoff, limit - gone),
            )
            gone += max(0, cur.rowcount)
            if gone >= limit:
                return gone
        # a batch goes once its rows have and it was committed longer ago
        # than retention and the skew allowed (as on SQLite): a forwarder
        # behind sees its rows gone, and counts them as expired (hub/forward)
        cur = self.db.execute(
            "DELETE FROM batches WHERE (host, stream, seq) IN (SELECT host, stream, seq"
            " FROM batches AS b WHERE received < %s AND NOT EXISTS (SELECT 1 FROM metrics"
            " WHERE rowid >= b.lo AND rowid <= b.hi) ORDER BY received LIMIT %s)",
            (before - self.limits.max_clock_skew, limit - gone),
        )
        return gone + max(0, cur.rowcount)

    # -- forwarding (hub/forward) ---------------------------------------------------

    def _forward_cursors(
        self, forward: str, cursors: dict[tuple[str, str], tuple[int, int]]
    ) -> None:
        # a cursor only moves on: a hub that lost the forward's lock without
        # knowing yet cannot take back what the hub leading it now committed
        with self.db.cursor() as cur:
            cur.executemany(
                "INSERT INTO forward_cursors AS c VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (forward, host, stream) DO UPDATE"
                " SET seq = excluded.seq, row = excluded.row"
                " WHERE (c.seq, c.row) < (excluded.seq, excluded.row)",
                [
                    (_nul(forward), host, _nul(stream), seq, row)
                    for (host, stream), (seq, row) in sorted(cursors.items())  # key order
                ],
            )

    # -- reads ----------------------------------------------------------------------

    def reader(self) -> PostgresReader:
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        return PostgresReader(self, conn)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        """A closed reader's connection: kept for the next reader (up to
        pool_size - 1 idle), else closed."""
        with self._idle_lock:
            if not conn.closed and not conn.broken and len(self._idle) < self.pool_size - 1:
                self._idle.append(conn)
                return
        conn.close()


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """A query of the SQLite reader in PostgreSQL's terms."""
    if sql == "BEGIN":  # a step read's snapshot (rollups and backfill together)
        return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    assert "%" not in sql, sql
    return sql.replace("?", "%s")


class _Adapter:
    """What SQLiteReader calls on its `db`, on a PostgreSQL connection
    (opened again on the next query after it was lost)."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any] | None) -> None:
        self.store = store
        self.conn = conn

    def _conn(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.conn = self.store.connector.connect()
            self.conn.execute("SET default_transaction_read_only = on")
        return self.conn

    def execute(self, sql: str, params: Collection[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn().execute(cast(Any, _pg(sql)), list(params) if params else None)

    def close(self) -> None:
        if self.conn is not None:
            self.store._give_back(self.conn)
            self.conn = None


class PostgresReader(SQLiteReader):
    """The SQLite reader's queries on a PostgreSQL connection, but for
    those written with SQLite's own functions (below)."""

    SERIES_JOIN = "JOIN"

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any] | None) -> None:
        self.db = cast(Any, _Adapter(store, conn))

    def check_latencies(self, since: float, until: float) -> Iterator[tuple[str, str, float]]:
        # bodies may hold NaN (json.dumps writes it), which jsonb refuses:
        # parsed here, a host at a time as SQLite does
        hosts = [h for (h,) in self.db.execute("SELECT id FROM hosts ORDER BY id")]
        for one in hosts:
            runs: list[tuple[str, float]] = []
            for (body,) in self.db.execute(
                "SELECT body FROM events WHERE host = ? AND ts >= ? AND ts < ? AND kind = 'check'",
                (one, since, until),
            ):
                record = json.loads(body, parse_constant=lambda _: None)
                if not isinstance(record, dict) or record.get("ok") != 1:
                    continue
                check, latency = record.get("name"), record.get("latency")
                if (
                    isinstance(check, str)
                    and isinstance(latency, (int, float))
                    and not isinstance(latency, bool)
                    and math.isfinite(latency)
                ):
                    runs.append((check, float(latency)))
            runs.sort(key=lambda r: (r[0].encode("utf-8", "surrogatepass"), r[1]))
            for check, latency in runs:
                yield one, check, latency


def read_dsn(dsn: str, dsn_file: Path | None) -> str:
    """The connection string: `dsn`, or `dsn_file`'s first line. OSError
    naming the file when it cannot be read or is empty."""
    if dsn_file is None:
        return dsn
    text = dsn_file.read_text().strip()
    if not text:
        raise OSError(f"{dsn_file} is empty")
    return text.splitlines()[0].strip()
