"""The embedded store: SQLite in WAL mode with `synchronous=FULL`, so a
commit is on disk before `ingest` returns. The schema is the one hubs
have always written (existing databases open as they are)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.store import EventRow, MetricRow, Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    agent_version TEXT NOT NULL,
    clock_offset REAL NOT NULL,         -- hub time minus the agent's send time
    skewed INTEGER NOT NULL DEFAULT 0,  -- records stamped outside the time window
    refused INTEGER NOT NULL DEFAULT 0  -- batches refused for its series limits
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
    PRIMARY KEY (host, name, labels)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_by_time ON metrics (ts);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);
"""


class SQLiteStore(Store):
    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=5000")
        # 512 KiB, not the default 2 MiB: a fleet's inserts touch more pages
        # than either holds, the kernel's page cache keeps the file, and the
        # hub's RSS budget is 45 MB (bench/footprint.py measures it).
        self.db.execute("PRAGMA cache_size=-512")
        self._create()

    def _create(self) -> None:
        """The schema, and what older databases lack."""
        had = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(hosts)")}
        for column in ("skewed", "refused"):
            if "hosts" in had and column not in columns:
                self.db.execute(f"ALTER TABLE hosts ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        self.db.executescript(SCHEMA)
        if "metrics" in had and "series" not in had:  # the limits count what is there
            self.db.execute(
                "INSERT OR IGNORE INTO series"
                " SELECT host, name, labels, max(ts) FROM metrics GROUP BY host, name, labels"
            )

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

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
        db.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", [(host, *m) for m in metrics]
        )
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [(host, *e) for e in events])
        newest: dict[tuple[str, str], float] = {}
        for m in metrics:
            key = (m.name, m.labels)
            newest[key] = max(m.ts, newest.get(key, m.ts))
        db.executemany(
            "INSERT INTO series VALUES (?, ?, ?, ?) ON CONFLICT (host, name, labels) DO UPDATE"
            " SET last_ts = max(last_ts, excluded.last_ts)",
            [(host, name, labels, ts) for (name, labels), ts in newest.items()],
        )
        db.execute(
            "INSERT INTO streams VALUES (?, ?, ?, ?) ON CONFLICT (host, stream) DO UPDATE"
            " SET last_seq = max(last_seq, excluded.last_seq), lost = lost + excluded.lost",
            (host, stream, mark, lost),
        )

    def _seen(
        self, host: str, received: float, agent_version: str, clock_offset: float, skewed: int
    ) -> None:
        self.db.execute(
            "INSERT INTO hosts (id, first_seen, last_seen, agent_version, clock_offset, skewed)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " last_seen = excluded.last_seen, agent_version = excluded.agent_version,"
            " clock_offset = excluded.clock_offset, skewed = skewed + excluded.skewed",
            (host, received, received, agent_version, clock_offset, skewed),
        )

    def note_refused(self, host: str, received: float) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT INTO hosts (id, first_seen, last_seen, agent_version, clock_offset,"
                " refused) VALUES (?, ?, ?, '', 0, 1)"
                " ON CONFLICT (id) DO UPDATE SET refused = refused + 1",
                (host, received, received),
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

    def expire(self, before: float, limit: int) -> int:
        self._totals.clear()  # series may go: count them again
        gone = 0
        with self._transaction():
            for table in ("metrics", "events"):
                gone += self.db.execute(
                    f"DELETE FROM {table} WHERE rowid IN"
                    f" (SELECT rowid FROM {table} WHERE ts < ? LIMIT ?)",
                    (before, limit - gone),
                ).rowcount
                if gone >= limit:
                    return gone
            gone += self.db.execute(
                "DELETE FROM series WHERE (host, name, labels) IN"
                " (SELECT host, name, labels FROM series WHERE last_ts < ? LIMIT ?)",
                (before, limit - gone),
            ).rowcount
        return gone

    # -- reads ---------------------------------------------------------------

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
                "streams": streams.get(host, []),
            }
            for host, first, last, version, offset, skewed, refused in self.db.execute(
                "SELECT id, first_seen, last_seen, agent_version, clock_offset, skewed, refused"
                " FROM hosts ORDER BY id"
            )
        ]

    def metrics(
        self, host: str | None, name: str | None, since: float, until: float, limit: int
    ) -> list[dict[str, Any]]:
        args: list[Any] = [since, until]
        query = _matching(
            "SELECT host, name, labels, ts, value FROM metrics WHERE ts >= ? AND ts <= ?",
            args,
            host=host,
            name=name,
        )
        query += " ORDER BY host, name, labels, ts LIMIT ?"
        args.append(limit)
        series: dict[tuple[str, str, str], list[list[float | None]]] = {}
        for h, n, labels, ts, value in self.db.execute(query, args):
            # SQLite stores NaN as NULL already; an infinity is stored as one
            finite = value if value is None or math.isfinite(value) else None
            series.setdefault((h, n, labels), []).append([ts, finite])
        return [
            {"host": h, "name": n, "labels": json.loads(labels), "points": points}
            for (h, n, labels), points in series.items()
        ]

    def events(
        self, host: str | None, kind: str | None, since: float, limit: int
    ) -> list[dict[str, Any]]:
        args: list[Any] = [since]
        query = _matching(
            "SELECT host, ts, kind, body FROM events WHERE ts >= ?", args, host=host, kind=kind
        )
        query += " ORDER BY ts DESC LIMIT ?"
        args.append(limit)
        return [
            {**json.loads(body, parse_constant=_not_finite), "host": h, "ts": ts, "kind": k}
            for h, ts, k, body in self.db.execute(query, args)
        ]


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
