"""The embedded store: SQLite in WAL mode with `synchronous=FULL`, so a
commit is on disk before `ingest` returns. The schema is the one hubs
have always written (existing databases open as they are), plus the
one-row `probe` table that /healthz writes to.

At start, `open_store` checks the file (`PRAGMA quick_check`); a damaged
one (not a database, truncated, a bad page) is renamed
`hub.db.<time>.corrupt`, with its `-wal` and `-shm`, and a fresh database
takes its place: the agents send again what they still hold. An error that
is not damage (no permission, no space) is left alone and raised as OSError.

Readers (`SQLiteReader`) each have their own connection, `query_only`: in
WAL mode they read the last commit while the writer goes on. Pages are
bounded: at most `limit` rows fetched per query, and an events page also
ends after about `PAGE_BYTES` of bodies. Cursors are the position of the
last row (its sort key and rowid), base64url JSON: the next page starts
right after it using the indexes, whatever was written meanwhile.

Rollups (hub/store/__init__.py) are the `rollups` table, keyed (host,
name, labels, bucket): a series' buckets lie together, in time order, so a
read with a step walks them in key order and folds them into its steps
without a sort. A database from before rollups gets the table and a
one-row `backfill` naming the raw points it holds (rowids up to `upto`);
`expire` rolls them up a chunk at a time (moving `done` in the same
transaction: a crash or a second run never counts a point twice) and
deletes nothing before it has finished, and a read meanwhile adds the raw
points of (done, upto] to the rollups, in the same snapshot.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import structlog

from hub.store import (
    AlertState,
    BadCursor,
    BatchSpan,
    EventRow,
    MetricRow,
    Page,
    Reader,
    Rollup,
    Store,
    Unwritable,
    bucket,
    fold,
    newest,
)

log = structlog.get_logger()

PAGE_BYTES = 8 << 20  # an events page ends after this much of event bodies
# Result codes (the low byte of an extended code) that mean the file cannot
# be written now: busy, locked, no memory, read-only, I/O error, damaged, full,
# cannot open, not a database. Others (constraint, too big) are the data's.
MAX_PARAMS = 999  # parameters a statement binds: SQLite's floor before 3.32, and plenty
_UNWRITABLE = {5, 6, 7, 8, 10, 11, 13, 14, 26}
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    agent_version TEXT NOT NULL,
    clock_offset REAL NOT NULL,         -- hub time minus the agent's send time
    skewed INTEGER NOT NULL DEFAULT 0,  -- records stamped too far ahead (clamped)
    refused INTEGER NOT NULL DEFAULT 0, -- batches refused for its series limits
    interval REAL,                      -- its collection interval, as it announced
    retired INTEGER NOT NULL DEFAULT 0, -- `vigil hub retire`: never alerted on
    revoked INTEGER NOT NULL DEFAULT 0  -- `vigil hub revoke`: its token is refused
);
CREATE TABLE IF NOT EXISTS streams (
    host TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    lost INTEGER NOT NULL DEFAULT 0,    -- sequence numbers never received (gaps)
    PRIMARY KEY (host, stream)
);
CREATE TABLE IF NOT EXISTS metrics (
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,               -- JSON, keys sorted: one string per series
    ts REAL NOT NULL,
    value REAL,
    type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_series ON metrics (host, name, ts);
CREATE TABLE IF NOT EXISTS events (
    host TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,                 -- log, alert, check, security, lifecycle
    body TEXT NOT NULL                  -- the record as JSON
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (host, ts);
CREATE TABLE IF NOT EXISTS series (     -- each host's series, for its limits
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    last_ts REAL NOT NULL,              -- its newest point: retention drops it after
    last_value REAL,                    -- and that point's value and type, for
    type TEXT,                          -- the hub's /metrics
    PRIMARY KEY (host, name, labels)
) WITHOUT ROWID;
-- retention deletes by time; unfiltered event pages read by time
CREATE INDEX IF NOT EXISTS metrics_by_time ON metrics (ts);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);
-- the reports read alert, security and log events by time: the few among
-- a fleet's check events (the index leaves those out: no cost at ingest)
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, ts)
    WHERE kind IN ('alert', 'security', 'log');
CREATE TABLE IF NOT EXISTS alerts (     -- each host's pending and firing alerts now
    host TEXT NOT NULL,
    fingerprint TEXT NOT NULL,          -- the agent's, or hub:NAME:HOST for the hub's
    name TEXT NOT NULL,
    state TEXT NOT NULL,                -- pending | firing
    severity TEXT NOT NULL,
    since REAL NOT NULL,
    summary TEXT NOT NULL,
    labels TEXT NOT NULL,               -- JSON
    PRIMARY KEY (host, fingerprint)
);
CREATE TABLE IF NOT EXISTS rollups (    -- 5-minute buckets of each series
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    bucket REAL NOT NULL,               -- its start: Unix seconds, a multiple of 300
    n INTEGER NOT NULL,                 -- points (NaN values not counted)
    total REAL,                         -- their sum (NULL: not a number, inf - inf)
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    last_ts REAL NOT NULL,              -- the newest point's time and value
    last REAL,
    PRIMARY KEY (host, name, labels, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_time ON rollups (bucket);
CREATE TABLE IF NOT EXISTS backfill (   -- raw points of an older database not yet rolled up
    id INTEGER PRIMARY KEY CHECK (id = 0),
    done INTEGER NOT NULL,              -- metrics rowids up to this are rolled up...
    upto INTEGER NOT NULL               -- ...of those up to this
);
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    at REAL NOT NULL                    -- /healthz's latest test write
);
-- Forwarding (hub/forward): each stored batch's metric rows, for the forwarders
CREATE TABLE IF NOT EXISTS batches (
    hi INTEGER PRIMARY KEY,             -- its metric rows are rowids lo..hi of metrics
    host TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,               -- the stream's mark after it
    received REAL NOT NULL,             -- when it was committed
    lo INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_stream ON batches (host, stream, seq);
CREATE TABLE IF NOT EXISTS forward_cursors (  -- what each forward has delivered
    forward TEXT NOT NULL,
    host TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,               -- batches up to this mark: delivered
    row INTEGER NOT NULL,               -- and of the next one, its rows up to this rowid
    PRIMARY KEY (forward, host, stream)
) WITHOUT ROWID;
"""


MAX_ROLLUP_ROWS = 50_000  # rollup rows one page of a step read folds, at most (plus one bucket)


def open_store(path: Path) -> SQLiteStore:
    """The store at `path`, checked first: a damaged file is set aside and
    a fresh one made (logged as `store_corrupt_set_aside`). Raises OSError
    when the file cannot be opened for another reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    damage = _damage(path)
    if damage is not None:
        aside = _set_aside(path)
        log.error("store_corrupt_set_aside", path=str(path), moved_to=str(aside), error=damage)
    try:
        return SQLiteStore(path)
    except sqlite3.Error as exc:
        raise OSError(f"{path}: {exc}") from exc


def _damage(path: Path) -> str | None:
    """What `quick_check` finds wrong with the database at `path`, if anything."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise OSError(f"{path}: {exc}") from exc
    try:
        result = [row[0] for row in db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        if _code(exc) in _DAMAGED:
            return str(exc)
        raise OSError(f"{path}: {exc}") from exc
    finally:
        db.close()
    return None if result == ["ok"] else "; ".join(result)[:500]


def _set_aside(path: Path) -> Path:
    """Rename the database and its -wal and -shm to `NAME.<time>.corrupt*`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.{stamp}.corrupt")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.{stamp}-{n}.corrupt")
    for suffix in ("-wal", "-shm", ""):  # the database last: it names the set
        part = Path(f"{path}{suffix}")
        if part.exists():
            os.replace(part, f"{aside}{suffix}")
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside


def _code(exc: sqlite3.Error) -> int:
    """The primary result code (Python 3.11+ has it; older: guess from the type)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    if isinstance(exc, sqlite3.OperationalError):
        return 10
    return 11 if type(exc) is sqlite3.DatabaseError else 1


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    # 512 KiB, not the default 2 MiB: a fleet's inserts touch more pages
    # than either holds, the kernel's page cache keeps the file, and the
    # hub's RSS budget is 45 MB (bench/footprint.py measures it).
    db.execute("PRAGMA cache_size=-512")
    return db


class SQLiteStore(Store):
    """The writer. `SQLiteStore(path)` opens without checking: the hub uses
    `open_store`."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = _connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        """Apply what MIGRATIONS has beyond the database's `schema_version`
        (a database from before versions: 0, whatever its shape; version 1
        recognises each older shape and completes it)."""
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version"
            " (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
        )
        current = self.db.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        version = int(current.fetchone()[0])
        known = MIGRATIONS[-1][0]
        if version > known:
            raise OSError(
                f"{self.path} has schema version {version}; this hub knows up to {known}:"
                " upgrade this hub"
            )
        for number, step in MIGRATIONS:
            if number > version:
                step(self)  # each step is idempotent: a crash before the next line redoes it
                self.db.execute("INSERT INTO schema_version VALUES (?, ?)", (number, time.time()))
                log.info("store_migrated", backend="sqlite", path=str(self.path), version=number)

    def _create(self) -> None:
        """The schema, and what databases written before issue 13 lack."""
        had = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(hosts)")}
        added = {
            "skewed": "INTEGER NOT NULL DEFAULT 0",
            "refused": "INTEGER NOT NULL DEFAULT 0",
            "interval": "REAL",
            "retired": "INTEGER NOT NULL DEFAULT 0",
            "revoked": "INTEGER NOT NULL DEFAULT 0",
        }
        for column, kind in added.items():
            if "hosts" in had and column not in columns:
                self.db.execute(f"ALTER TABLE hosts ADD COLUMN {column} {kind}")
        if "series" in had:
            series_columns = {row[1] for row in self.db.execute("PRAGMA table_info(series)")}
            for column, kind in (("last_value", "REAL"), ("type", "TEXT")):
                if column not in series_columns:
                    self.db.execute(f"ALTER TABLE series ADD COLUMN {column} {kind}")
        if "metrics" in had and "rollups" not in had:
            # the table and the backfill of what is there, at once: a crash
            # in between would leave those points never rolled up
            self.db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                if "rollups" in statement or "backfill" in statement:
                    self.db.execute(statement)
            self.db.execute(
                "INSERT INTO backfill SELECT 0, 0, max(rowid) FROM metrics HAVING count(*) > 0"
            )
            self.db.execute("COMMIT")
        self.db.executescript(SCHEMA)
        if "metrics" in had and "series" not in had:  # the limits count what is there
            self.db.execute(
                "INSERT OR IGNORE INTO series (host, name, labels, last_ts)"
                " SELECT host, name, labels, max(ts) FROM metrics GROUP BY host, name, labels"
            )

    def close(self) -> None:
        self.db.close()

    def reader(self) -> SQLiteReader:
        return SQLiteReader(self.path)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:
                # SQLite may have rolled back already (a full disk)
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and _code(exc) in _UNWRITABLE:
                raise Unwritable(str(exc)) from exc
            raise

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        self.db.execute("SAVEPOINT batch")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:  # else SQLite rolled back the whole (a full disk)
                self.db.execute("ROLLBACK TO batch")
                self.db.execute("RELEASE batch")
            raise
        self.db.execute("RELEASE batch")

    def _many(self, head: str, rows: list[tuple[Any, ...]], tail: str = "") -> None:
        """`executemany(head VALUES (?, ...) tail, rows)` as one statement of
        many VALUES rows (up to MAX_PARAMS parameters each). Why: SQLite
        lets go of the interpreter lock for each step, and executemany
        steps once per row; under load the HTTP and decode threads took the
        lock each time, so a batch cost the store thread twice its time
        alone. One step per statement keeps the lock handovers few."""
        if not rows:
            return
        width = len(rows[0])
        one = "(" + ", ".join("?" * width) + ")"
        step = max(1, MAX_PARAMS // width)
        for i in range(0, len(rows), step):
            chunk = rows[i : i + step]
            values = ", ".join([one] * len(chunk))
            self.db.execute(f"{head} VALUES {values}{tail}", [v for r in chunk for v in r])

    def _fatal(self, exc: Exception) -> bool:
        if not self.db.in_transaction:
            return True
        return isinstance(exc, sqlite3.DatabaseError) and _code(exc) in _UNWRITABLE

    def _touch(self, now: float) -> None:
        self.db.execute(
            "INSERT INTO probe VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            (now,),
        )

    def _mark(self, host: str, stream: str) -> int:
        row = self.db.execute(
            "SELECT last_seq FROM streams WHERE host = ? AND stream = ?", (host, stream)
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
        if metrics:
            # rowids above any a batch names, even deleted ones: a batch's
            # range holds its own rows or none (forwarding, hub/forward)
            (lo,) = db.execute(
                "SELECT max(coalesce((SELECT max(rowid) FROM metrics), 0),"
                " coalesce((SELECT max(hi) FROM batches), 0)) + 1"
            ).fetchone()
            self._many(
                "INSERT INTO metrics (rowid, host, name, labels, ts, value, type)",
                [(lo + i, host, *m) for i, m in enumerate(metrics)],
            )
            db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                (lo + len(metrics) - 1, host, stream, mark, time.time(), lo),
            )
        self._append_events(host, events)
        latest = newest(metrics)
        self._many(
            "INSERT INTO series (host, name, labels, last_ts, last_value, type)",
            [(host, m.name, m.labels, m.ts, m.value, m.type) for m in latest.values()],
            " ON CONFLICT (host, name, labels) DO UPDATE SET"
            " last_value = CASE WHEN excluded.last_ts >= last_ts"
            " THEN excluded.last_value ELSE last_value END,"
            " type = excluded.type, last_ts = max(last_ts, excluded.last_ts)",
        )
        db.execute(
            "INSERT INTO streams VALUES (?, ?, ?, ?) ON CONFLICT (host, stream) DO UPDATE"
            " SET last_seq = max(last_seq, excluded.last_seq), lost = lost + excluded.lost",
            (host, stream, mark, lost),
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
            "INSERT INTO hosts (id, first_seen, last_seen, agent_version, clock_offset, skewed,"
            " interval) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " last_seen = excluded.last_seen, agent_version = excluded.agent_version,"
            " clock_offset = excluded.clock_offset, skewed = skewed + excluded.skewed,"
            " interval = coalesce(excluded.interval, interval)",
            (host, received, received, agent_version, clock_offset, skewed, interval),
        )

    def _append_events(self, host: str, events: list[EventRow]) -> None:
        self._many("INSERT INTO events", [(host, *e) for e in events])

    def _alert_states(self, host: str, states: list[AlertState]) -> None:
        for a in states:
            if a.state in ("pending", "firing"):
                self.db.execute(
                    "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (host, fingerprint) DO UPDATE SET state = excluded.state,"
                    " severity = excluded.severity, since = excluded.since,"
                    " summary = excluded.summary, labels = excluded.labels",
                    (host, *a),
                )
            else:
                self.db.execute(
                    "DELETE FROM alerts WHERE host = ? AND fingerprint = ?", (host, a.fingerprint)
                )

    def _flag(self, host: str, column: str, value: int, now: float) -> None:
        assert column in ("retired", "revoked")  # our names, never input
        self.db.execute(
            "INSERT INTO hosts (id, first_seen, last_seen, agent_version, clock_offset,"
            f" {column}) VALUES (?, ?, ?, '', 0, ?)"
            f" ON CONFLICT (id) DO UPDATE SET {column} = excluded.{column}",
            (host, now, now, value),
        )

    def _count_refused(self, refused: dict[str, int], now: float) -> None:
        self.db.executemany(
            "INSERT INTO hosts (id, first_seen, last_seen, agent_version, clock_offset,"
            " refused) VALUES (?, ?, ?, '', 0, ?)"
            " ON CONFLICT (id) DO UPDATE SET refused = refused + excluded.refused",
            [(host, now, now, n) for host, n in refused.items()],
        )

    def _new_series(self, host: str, series: set[tuple[str, str]], stop_after: int) -> int:
        new = 0
        for name, labels in series:
            row = self.db.execute(
                "SELECT 1 FROM series WHERE host = ? AND name = ? AND labels = ?",
                (host, name, labels),
            ).fetchone()
            if row is None:
                new += 1
                if new > stop_after:
                    break
        return new

    def _series_count(self, host: str) -> int:
        row = self.db.execute("SELECT count(*) FROM series WHERE host = ?", (host,)).fetchone()
        return int(row[0])

    def _roll(self, host: str, rollups: dict[tuple[str, str, float], Rollup]) -> None:
        # in SET, a bare column is the row's value before this update
        self._many(
            "INSERT INTO rollups",
            [(host, name, labels, b, *r) for (name, labels, b), r in rollups.items()],
            " ON CONFLICT (host, name, labels, bucket) DO UPDATE SET"
            " n = n + excluded.n, total = total + excluded.total,"
            " lo = min(lo, excluded.lo), hi = max(hi, excluded.hi),"
            " last = CASE WHEN (excluded.last_ts, excluded.last) > (last_ts, last)"
            " THEN excluded.last ELSE last END,"
            " last_ts = max(last_ts, excluded.last_ts)",
        )

    def _backfill(self, limit: int) -> int | None:
        """Roll up the next `limit` raw points of the backfill; how many
        there were, None if there is no backfill (any more)."""
        row = self.db.execute("SELECT done, upto FROM backfill").fetchone()
        if row is None:
            return None
        done, upto = row
        points = self.db.execute(
            "SELECT rowid, host, name, labels, ts, value, type FROM metrics"
            " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (done, upto, limit),
        ).fetchall()
        by_host: dict[str, list[MetricRow]] = {}
        for _, host, name, labels, ts, value, kind in points:
            by_host.setdefault(host, []).append(
                MetricRow(name, labels, ts, math.nan if value is None else value, kind)
            )
        for host, metrics in by_host.items():
            self._roll(host, fold(metrics))
        if len(points) < limit:
            self.db.execute("DELETE FROM backfill")
            log.info("rollup_backfill_done", upto=upto)
        else:
            self.db.execute("UPDATE backfill SET done = ?", (points[-1][0],))
        return len(points)

    def _expire(
        self, before: float, limit: int, events_before: float, rollups_before: float
    ) -> int:
        gone = self._backfill(limit)
        if gone is not None and gone >= limit:
            return gone  # nothing is deleted before every raw point is rolled up
        gone = gone or 0
        for table, column, cutoff in (
            ("metrics", "ts", before),
            ("events", "ts", events_before),
            ("rollups", "bucket", rollups_before),
        ):
            key = "rowid" if table != "rollups" else "host, name, labels, bucket"
            gone += self.db.execute(
                f"DELETE FROM {table} WHERE ({key}) IN"
                f" (SELECT {key} FROM {table} WHERE {column} < ? LIMIT ?)",
                (cutoff, limit - gone),
            ).rowcount
            if gone >= limit:
                return gone
        gone += self.db.execute(
            "DELETE FROM series WHERE (host, name, labels) IN"
            " (SELECT host, name, labels FROM series WHERE last_ts < ? LIMIT ?)",
            (before, limit - gone),
        ).rowcount
        if gone >= limit:
            return gone
        # a batch goes once all its rows have (and every older row: the
        # scan stops at the oldest row left) and it was committed longer
        # ago than retention and the skew allowed: a forwarder behind sees
        # its rows gone, and counts them as expired (hub/forward)
        gone += self.db.execute(
            "DELETE FROM batches WHERE hi IN (SELECT hi FROM batches WHERE hi <"
            " coalesce((SELECT min(rowid) FROM metrics), 9223372036854775807)"
            " AND received < ? ORDER BY hi LIMIT ?)",
            (before - self.limits.max_clock_skew, limit - gone),
        ).rowcount
        return gone

    # -- forwarding (hub/forward) ----------------------------------------------

    def _forward_cursors(
        self, forward: str, cursors: dict[tuple[str, str], tuple[int, int]]
    ) -> None:
        self.db.executemany(
            "INSERT INTO forward_cursors VALUES (?, ?, ?, ?, ?) ON CONFLICT (forward, host, stream)"
            " DO UPDATE SET seq = excluded.seq, row = excluded.row",
            [(forward, host, stream, seq, row) for (host, stream), (seq, row) in cursors.items()],
        )


# (version, step): applied in order, each once, at open. Add to the end.
MIGRATIONS: list[tuple[int, Callable[[SQLiteStore], None]]] = [
    (1, SQLiteStore._create),  # the schema of issues 12-14, from any earlier shape
]


class SQLiteReader(Reader):
    # series first, then a seek on the rollups' key per series: SQLite's
    # CROSS JOIN keeps that order (PostgreSQL's planner finds it itself)
    SERIES_JOIN = "CROSS JOIN"

    def __init__(self, path: Path) -> None:
        self.db = _connect(path)
        self.db.execute("PRAGMA query_only=1")

    def close(self) -> None:
        self.db.close()

    def hosts(self) -> list[dict[str, Any]]:
        streams: dict[str, list[dict[str, Any]]] = {}
        for host, stream, last_seq, lost in self.db.execute(
            "SELECT host, stream, last_seq, lost FROM streams ORDER BY host, stream"
        ):
            streams.setdefault(host, []).append(
                {"stream": stream, "last_seq": last_seq, "lost": lost}
            )
        return [
            {
                "id": host,
                "first_seen": first,
                "last_seen": last,
                "agent_version": version,
                "clock_offset": offset,
                "skewed_records": skewed,
                "refused_batches": refused,
                "interval": interval,
                "retired": bool(retired),
                "revoked": bool(revoked),
                "streams": streams.get(host, []),
            }
            for (
                host,
                first,
                last,
                version,
                offset,
                skewed,
                refused,
                interval,
                retired,
                revoked,
            ) in self.db.execute(
                "SELECT id, first_seen, last_seen, agent_version, clock_offset, skewed, refused,"
                " interval, retired, revoked FROM hosts ORDER BY id"
            )
        ]

    def alerts(self) -> list[dict[str, Any]]:
        return [
            {
                "host": host,
                "name": name,
                "state": state,
                "severity": severity,
                "since": since,
                "summary": summary,
                "labels": json.loads(labels),
            }
            for host, name, state, severity, since, summary, labels in self.db.execute(
                "SELECT host, name, state, severity, since, summary, labels FROM alerts"
                " ORDER BY state DESC, since"
            )
        ]

    def latest(self) -> Iterator[tuple[str, str, str, str, float]]:
        yield from self.db.execute(
            "SELECT host, name, labels, coalesce(type, 'gauge'), last_value FROM series"
            " WHERE last_value IS NOT NULL ORDER BY name, host, labels"
        )

    def latest_of(
        self, names: Collection[str], host: str | None = None
    ) -> list[tuple[str, str, str, float]]:
        marks = ", ".join("?" * len(names))
        args: list[Any] = list(names)
        # hosts first, as in rollups_of: a seek per (host, name) on the key
        query = (
            "SELECT s.host, s.name, s.labels, s.last_value FROM hosts AS h CROSS JOIN series AS s"
            f" WHERE s.host = h.id AND s.name IN ({marks}) AND s.last_value IS NOT NULL"
        )
        if host is not None:
            query += " AND h.id = ?"
            args.append(host)
        return list(self.db.execute(query + " ORDER BY s.host, s.name, s.labels", args))

    def rollups_of(
        self, name: str, labels: str, since: float, until: float, agg: str = "avg"
    ) -> dict[str, list[list[float | None]]]:
        if self.db.execute("SELECT 1 FROM backfill").fetchone():  # not all rolled up yet
            return super().rollups_of(name, labels, since, until, agg)
        # hosts first (CROSS JOIN keeps that order): one index seek per host
        # on the rollups' key, not a walk of every series' recent buckets
        out: dict[str, list[list[float | None]]] = {}
        for host, b, *r in self.db.execute(
            "SELECT r.host, r.bucket, r.n, r.total, r.lo, r.hi, r.last_ts, r.last"
            " FROM hosts AS h CROSS JOIN rollups AS r WHERE r.host = h.id AND r.name = ?"
            " AND r.labels = ? AND r.bucket >= ? AND r.bucket <= ? ORDER BY r.host, r.bucket",
            (name, labels, bucket(since), until),
        ):
            rollup = Rollup(r[0], _num(r[1]), r[2], r[3], r[4], _num(r[5]))
            out.setdefault(host, []).append([b, rollup.value(agg)])
        return out

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
        if step is not None:
            self.db.execute("BEGIN")  # the rollups and the backfill's raw points: one snapshot
            try:
                return self._rolled(host, name, since, until, limit, after, step, agg)
            finally:
                self.db.execute("COMMIT")
        args: list[Any] = [since, until]
        query = _matching(
            "SELECT host, name, labels, ts, value, rowid FROM metrics WHERE ts >= ? AND ts <= ?",
            args,
            host=host,
            name=name,
        )
        if after is not None:
            h, n, t, r = _cursor(after, str, str, float, int)
            query += " AND (host, name, ts, rowid) > (?, ?, ?, ?)"
            args += [h, n, t, r]
        # the index (host, name, ts) holds rowid last: no sort, no scan of
        # what came before the cursor
        query += " ORDER BY host, name, ts, rowid LIMIT ?"
        args.append(limit + 1)
        series: dict[tuple[str, str, str], list[list[float | None]]] = {}
        count, last, more = 0, None, False
        for h, n, labels, ts, value, rowid in self.db.execute(query, args):
            if count == limit:
                more = True
                break
            # SQLite stores NaN as NULL already; an infinity is stored as one
            finite = value if value is None or math.isfinite(value) else None
            series.setdefault((h, n, labels), []).append([ts, finite])
            count, last = count + 1, (h, n, ts, rowid)
        items = [
            {"host": h, "name": n, "labels": json.loads(labels), "points": points}
            for (h, n, labels), points in sorted(series.items(), key=lambda kv: kv[0])
        ]
        return Page(items, _make_cursor(last) if more and last else None)

    def _rolled(
        self,
        host: str | None,
        name: str | None,
        since: float,
        until: float,
        limit: int,
        after: str | None,
        step: float,
        agg: str,
    ) -> Page:
        """`metrics` with a step: rollup rows in key order, folded by step."""
        args: list[Any] = [bucket(since, step), bucket(until, step) + step]
        query = _matching(
            "SELECT host, name, labels, bucket, n, total, lo, hi, last_ts, last FROM rollups"
            " WHERE bucket >= ? AND bucket < ?",
            args,
            host=host,
            name=name,
        )
        if after is not None:
            h, n, labels, b, s = _cursor(after, str, str, str, float, float)
            if s != step:
                raise BadCursor("a cursor of another step")
            query += " AND (host, name, labels, bucket) >= (?, ?, ?, ?)"
            args += [h, n, labels, b]
        rows: Iterable[tuple[Any, ...]] = self.db.execute(
            query + " ORDER BY host, name, labels, bucket", args
        )
        backfill = self.db.execute("SELECT done, upto FROM backfill").fetchone()
        if backfill is not None:
            raw = self._unrolled(host, name, since, until, after, step, backfill)
            rows = heapq.merge(rows, raw, key=lambda row: row[:4])
        series: dict[tuple[str, str, str], list[list[float | None]]] = {}
        group: tuple[str, str, str, float] | None = None
        acc: Rollup | None = None
        scanned = 0
        for h, n, labels, b, *r in rows:
            scanned += 1
            key = (h, n, labels, bucket(b, step))
            rollup = Rollup(r[0], _num(r[1]), r[2], r[3], r[4], _num(r[5]))
            if acc is not None and key == group:
                acc = acc.merge(rollup)
                continue
            if acc is not None and group is not None:
                series.setdefault(group[:3], []).append([group[3], acc.value(agg)])
                limit -= 1
            # A page ends between buckets, the next starting at this one: after
            # `limit` points, or after MAX_ROLLUP_ROWS rows read (a wide step
            # folds many rows into each point; a page's work stays bounded).
            if limit == 0 or scanned > MAX_ROLLUP_ROWS:
                return Page(_series(series), _make_cursor((*key, step)))
            group, acc = key, rollup
        if acc is not None and group is not None:
            series.setdefault(group[:3], []).append([group[3], acc.value(agg)])
        return Page(_series(series), None)

    def _unrolled(
        self,
        host: str | None,
        name: str | None,
        since: float,
        until: float,
        after: str | None,
        step: float,
        backfill: tuple[int, int],
    ) -> Iterator[tuple[Any, ...]]:
        """Raw points the backfill has not rolled up yet, as rollup rows of
        one point each, in the rollups' order (bucket is the point's)."""
        args: list[Any] = [*backfill, bucket(since, step), bucket(until, step) + step]
        query = _matching(
            "SELECT host, name, labels, ts, value FROM metrics"
            " WHERE rowid > ? AND rowid <= ? AND ts >= ? AND ts < ?",
            args,
            host=host,
            name=name,
        )
        if after is not None:
            h, n, labels, b, _ = _cursor(after, str, str, str, float, float)
            query += " AND (host, name, labels, ts) >= (?, ?, ?, ?)"
            args += [h, n, labels, b]
        for h, n, labels, ts, value in self.db.execute(
            query + " ORDER BY host, name, labels, ts, rowid", args
        ):
            if value is not None:
                yield (h, n, labels, bucket(ts), 1, value, value, value, ts, value)

    def events(
        self,
        host: str | None,
        kind: str | None,
        since: float,
        limit: int,
        after: str | None = None,
        until: float = math.inf,
    ) -> Page:
        args: list[Any] = [since]
        query = _matching(
            "SELECT rowid AS r, ts FROM events WHERE ts >= ?", args, host=host, kind=kind
        )
        if until < math.inf:
            query += " AND ts <= ?"
            args.append(until)
        if after is not None:
            t, r = _cursor(after, float, int)
            query += " AND (ts, rowid) < (?, ?)"
            args += [t, r]
        # sort the keys only, then fetch the bodies one by one: a page's
        # memory is its own bodies, not a sorter full of them
        query = (
            "SELECT e.host, e.ts, e.kind, e.body, k.r FROM"
            f" ({query} ORDER BY ts DESC, rowid DESC LIMIT ?) AS k"
            " JOIN events AS e ON e.rowid = k.r ORDER BY k.ts DESC, k.r DESC"
        )
        args.append(limit + 1)
        items: list[dict[str, Any]] = []
        size, last, more = 0, None, False
        for h, ts, k, body, rowid in self.db.execute(query, args):
            if len(items) == limit or (items and size + len(body) > PAGE_BYTES):
                more = True
                break
            size += len(body)
            items.append(
                {**json.loads(body, parse_constant=_not_finite), "host": h, "ts": ts, "kind": k}
            )
            last = (ts, rowid)
        return Page(items, _make_cursor(last) if more and last else None)

    # -- reports -----------------------------------------------------------------

    def events_between(
        self, kind: str, since: float, until: float
    ) -> Iterator[tuple[str, float, dict[str, Any]]]:
        query = "SELECT host, ts, body FROM events WHERE ts >= ? AND ts < ? AND kind = ?"
        if kind in INDEXED_KINDS:  # the partial index's own term: the planner can use it
            query += f" AND {_INDEXED_KINDS}"
        for host, ts, body in self.db.execute(query + " ORDER BY ts, rowid", (since, until, kind)):
            record = json.loads(body, parse_constant=_not_finite)
            if isinstance(record, dict):
                yield host, ts, record

    def check_totals(self, since: float, until: float) -> list[tuple[str, str, int, float]]:
        return [
            (host, labels, int(n), float(passing or 0.0))
            for host, labels, n, passing in self.db.execute(
                "SELECT s.host, s.labels, sum(r.n), sum(r.total) FROM series AS s"
                f" {self.SERIES_JOIN} rollups AS r ON {_SERIES_ROLLUPS}"
                " WHERE s.name = 'check_up' GROUP BY s.host, s.labels ORDER BY s.host, s.labels",
                (since, until),
            )
        ]

    def check_latencies(self, since: float, until: float) -> Iterator[tuple[str, str, float]]:
        # json_extract in SQLite: a day of a fleet's runs is millions of rows;
        # host by host (the (host, ts) index), so a sort holds one host's runs
        hosts = [h for (h,) in self.db.execute("SELECT id FROM hosts ORDER BY id")]
        for one in hosts:
            for check, latency in self.db.execute(
                "SELECT check_name, latency FROM (SELECT"
                " json_extract(body, '$.name') AS check_name,"
                " json_extract(body, '$.latency') AS latency, json_extract(body, '$.ok') AS ok"
                " FROM events WHERE host = ? AND ts >= ? AND ts < ? AND kind = 'check')"
                " WHERE ok = 1 AND typeof(latency) IN ('real', 'integer')"
                " ORDER BY check_name, latency",
                (one, since, until),
            ):
                if isinstance(check, str) and math.isfinite(latency):
                    yield one, check, float(latency)

    def rollup_lasts(
        self, name: str, since: float, until: float
    ) -> Iterator[tuple[str, str, float, float]]:
        for host, labels, ts, value in self.db.execute(
            "SELECT s.host, s.labels, r.last_ts, r.last FROM series AS s"
            f" {self.SERIES_JOIN} rollups AS r ON {_SERIES_ROLLUPS}"
            " WHERE s.name = ? AND r.last IS NOT NULL ORDER BY s.host, s.labels, r.bucket",
            (since, until, name),
        ):
            if math.isfinite(value):
                yield host, labels, float(ts), float(value)

    def first_record(self, host: str, since: float, until: float) -> float | None:
        event = self.db.execute(
            "SELECT min(ts) FROM events WHERE host = ? AND ts >= ? AND ts < ?", (host, since, until)
        ).fetchone()[0]
        rolled = self.db.execute(
            "SELECT min(r.bucket) FROM series AS s"
            f" {self.SERIES_JOIN} rollups AS r ON {_SERIES_ROLLUPS} WHERE s.host = ?",
            (since, until, host),
        ).fetchone()[0]
        found = [float(t) for t in (event, rolled) if t is not None]
        return min(found) if found else None

    # -- forwarding (hub/forward) ----------------------------------------------

    def stream_marks(self) -> list[tuple[str, str, int]]:
        return self.db.execute("SELECT host, stream, last_seq FROM streams").fetchall()

    def batches_after(self, host: str, stream: str, seq: int, limit: int) -> list[BatchSpan]:
        return [
            BatchSpan(*row)
            for row in self.db.execute(
                "SELECT seq, lo, hi, received FROM batches WHERE host = ? AND stream = ?"
                " AND seq > ? ORDER BY seq LIMIT ?",
                (host, stream, seq, limit),
            )
        ]

    def batch_rows(self, first: int, last: int, limit: int) -> list[tuple[Any, ...]]:
        return self.db.execute(
            "SELECT rowid, name, labels, ts, value, type FROM metrics"
            " WHERE rowid >= ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (first, last, limit),
        ).fetchall()

    def forward_cursors(self, forward: str) -> dict[tuple[str, str], tuple[int, int]]:
        return {
            (host, stream): (seq, row)
            for host, stream, seq, row in self.db.execute(
                "SELECT host, stream, seq, row FROM forward_cursors WHERE forward = ?", (forward,)
            )
        }


INDEXED_KINDS = ("alert", "security", "log")  # events_by_kind holds these
_INDEXED_KINDS = "kind IN ('alert', 'security', 'log')"

# each series' rollups in a range of buckets: a seek on the rollups' key per
# series (the series table lists them), not a scan of every metric's buckets
_SERIES_ROLLUPS = (
    "r.host = s.host AND r.name = s.name AND r.labels = s.labels AND r.bucket >= ? AND r.bucket < ?"
)


def _make_cursor(position: tuple[Any, ...]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(text: str, *types: type) -> list[Any]:
    """The position a cursor of ours holds, checked against `types`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        position = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise BadCursor("not a cursor of this hub") from exc
    if not isinstance(position, list) or len(position) != len(types):
        raise BadCursor("not a cursor of this hub")
    out: list[Any] = []
    for value, kind in zip(position, types):
        if kind is float and type(value) is int:
            if not _in_range(value):  # float() of a 400-digit integer overflows
                raise BadCursor("not a cursor of this hub")
            value = float(value)
        if type(value) is not kind or not _in_range(value):
            raise BadCursor("not a cursor of this hub")
        out.append(value)
    return out


def _in_range(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def _series(
    series: dict[tuple[str, str, str], list[list[float | None]]],
) -> list[dict[str, Any]]:
    return [
        {"host": h, "name": n, "labels": json.loads(labels), "points": points}
        for (h, n, labels), points in series.items()
    ]


def _num(value: float | None) -> float:
    """A REAL column's value; SQLite reads NaN as NULL."""
    return math.nan if value is None else value


def _not_finite(constant: str) -> None:
    """NaN, Infinity and -Infinity in a stored body (json.dumps writes them)."""
    return None


def _matching(query: str, args: list[Any], **equal: str | None) -> str:
    """Add `AND column = ?` for each filter given (column names are ours, not input)."""
    for column, value in equal.items():
        if value:
            query += f" AND {column} = ?"
            args.append(value)
    return query
