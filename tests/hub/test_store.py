"""One behavioural suite for every store backend (hub/store/): the
exactly-once rules, the host registry and the queries. A new backend adds
one entry to BACKENDS (tests/hub/conftest.py) and must pass all of it
unchanged."""

from __future__ import annotations

import base64
import math
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.core import protocol
from hub.store import BadCursor, Ingested, Limits, Reader, SeriesLimit, Unwritable
from hub.store import sqlite as sqlite_backend
from hub.store.sqlite import SQLiteStore, open_store

S1 = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
S2 = "00112233445566778899aabbccddeeff"
T0 = 1767225600.0  # 2026-01-01
Y2100 = 4102444800.0


def metric(seq: int, **over: Any) -> dict[str, Any]:
    return {
        "kind": "metric",
        "name": "m",
        "labels": {"seq": str(seq)},
        "value": seq,
        "ts": T0 + seq,
        **over,
    }


def wire(
    first: int,
    n: int = 0,
    *,
    records: list[dict[str, Any]] | None = None,
    host: str = "web-01",
    stream: str = S1,
    sent: float = T0,
) -> protocol.Batch:
    """A batch as the hub sees it: encoded and decoded by the real codec."""
    recs = records if records is not None else [metric(first + i) for i in range(n)]
    return protocol.decode_batch(protocol.encode_batch(host, stream, first, recs, "0.1.0", sent))


def seqs(reader: Reader, host: str | None = None) -> list[int]:
    """The sequence numbers of the stored sample metrics, each as often as stored."""
    return sorted(
        int(s["labels"]["seq"])
        for s in reader.metrics(host, "m", 0, 1e12, 100_000).items
        for _ in s["points"]
    )


def streams(reader: Reader, host: str = "web-01") -> list[dict[str, Any]]:
    [h] = [h for h in reader.hosts() if h["id"] == host]
    return h["streams"]  # type: ignore[no-any-return]


def test_a_fresh_stream_stores_everything(store, reader):
    assert reader.hosts() == []
    assert store.ingest(wire(1, 3), T0 + 5) == Ingested(last_seq=3, stored=3)
    assert seqs(reader) == [1, 2, 3]
    [host] = reader.hosts()
    assert host == {
        "id": "web-01",
        "first_seen": T0 + 5,
        "last_seen": T0 + 5,
        "agent_version": "0.1.0",
        "clock_offset": 5.0,
        "skewed_records": 0,
        "refused_batches": 0,
        "interval": None,
        "retired": False,
        "revoked": False,
        "streams": [{"stream": S1, "last_seq": 3, "lost": 0}],
    }


def test_a_replayed_batch_is_acknowledged_without_storing_twice(store, reader):
    store.ingest(wire(1, 3), T0)
    assert store.ingest(wire(1, 3), T0 + 1) == Ingested(3, 0)
    assert store.ingest(wire(2, 2), T0 + 2) == Ingested(3, 0)  # inside what is held
    assert store.ingest(wire(1, 1), T0 + 3) == Ingested(3, 0)
    assert seqs(reader) == [1, 2, 3]
    assert streams(reader) == [{"stream": S1, "last_seq": 3, "lost": 0}]
    # a replay is contact: the host is alive
    assert reader.hosts()[0]["last_seen"] == T0 + 3
    assert reader.hosts()[0]["first_seen"] == T0


def test_an_overlapping_batch_is_trimmed_to_its_new_records(store, reader):
    store.ingest(wire(1, 3), T0)
    assert store.ingest(wire(2, 4), T0) == Ingested(5, 2)
    assert store.ingest(wire(5, 3), T0) == Ingested(7, 2)
    assert seqs(reader) == [1, 2, 3, 4, 5, 6, 7]
    assert streams(reader) == [{"stream": S1, "last_seq": 7, "lost": 0}]


def test_gaps_are_stored_around_and_counted_once(store, reader):
    # the stream's first batch starts at 41: 1-40 were lost on the agent
    assert store.ingest(wire(41, 2), T0) == Ingested(42, 2)
    assert store.ingest(wire(46, 2), T0) == Ingested(47, 2)  # 43-45 lost
    assert store.ingest(wire(46, 2), T0) == Ingested(47, 0)  # a replay adds no loss
    assert store.ingest(wire(44, 6), T0) == Ingested(49, 2)  # late 44-45: too late, trimmed
    assert seqs(reader) == [41, 42, 46, 47, 48, 49]
    assert streams(reader) == [{"stream": S1, "last_seq": 49, "lost": 43}]


def test_two_streams_of_one_host_keep_their_own_marks(store, reader):
    # a host whose buffer directory was recreated: a new stream starts at 1
    store.ingest(wire(1, 5, stream=S1), T0)
    assert store.ingest(wire(1, 2, stream=S2), T0) == Ingested(2, 2)
    assert store.ingest(wire(3, 1, stream=S2), T0) == Ingested(3, 1)
    assert store.ingest(wire(4, 2, stream=S1), T0) == Ingested(5, 0)
    assert seqs(reader) == [1, 1, 2, 2, 3, 3, 4, 5]
    assert streams(reader) == [
        {"stream": S2, "last_seq": 3, "lost": 0},
        {"stream": S1, "last_seq": 5, "lost": 0},
    ]


def test_two_hosts_with_the_same_stream_id_are_apart(store, reader):
    store.ingest(wire(1, 3, host="web-01"), T0 + 1)
    assert store.ingest(wire(1, 2, host="db-01", sent=T0 + 10), T0 + 2) == Ingested(2, 2)
    assert [h["id"] for h in reader.hosts()] == ["db-01", "web-01"]
    assert streams(reader, "db-01") == [{"stream": S1, "last_seq": 2, "lost": 0}]
    assert streams(reader, "web-01") == [{"stream": S1, "last_seq": 3, "lost": 0}]
    assert reader.hosts()[0]["clock_offset"] == -8.0  # db-01's clock is ahead
    assert seqs(reader, "db-01") == [1, 2]
    assert seqs(reader, "web-01") == [1, 2, 3]
    assert {s["host"] for s in reader.metrics(None, "m", 0, 1e12, 100).items} == {"db-01", "web-01"}


def test_hostile_values_round_trip_through_the_queries(store, reader):
    store.limits = Limits()  # the defaults: 1 h of clock skew, 7 days kept
    labels = {"mount": "/données/日本", "ключ": "🙂", "empty": ""}
    records = [
        metric(1, name="huge", value=2**64 - 1, labels={}),  # the largest msgpack integer
        metric(2, name="huge", value=-(2**63), labels={}),
        metric(3, name="nan", value=float("nan")),
        metric(4, name="inf", value=float("inf")),
        metric(5, name="future", ts=Y2100),  # stored at the hub's time of receipt
        metric(6, name="old", ts=0),  # older than the retention: stored, expired later
        {**metric(7, name="labels"), "labels": labels, "type": "counter"},
        {
            "kind": "event",
            "type": "log",
            "ts": Y2100,
            "line": "échec d'authentification pour 用户 \x00\u2028",
            "count": 2**64 - 1,
            "ratio": float("nan"),
            "fields": {"ключ": [1, -(2**63)]},
        },
        {"kind": "check", "name": "api", "ts": T0, "ok": False, "latency": float("inf")},
    ]
    assert store.ingest(wire(1, records=records), T0 + 10) == Ingested(9, 9)

    def points(name: str) -> list[list[Any]]:
        [series] = reader.metrics("web-01", name, 0, 1e20, 100).items
        return series["points"]  # type: ignore[no-any-return]

    assert points("huge") == [[T0 + 1, float(2**64 - 1)], [T0 + 2, float(-(2**63))]]
    assert points("nan") == [[T0 + 3, None]]  # JSON has no NaN
    assert points("inf") == [[T0 + 4, None]]
    assert points("future") == [[T0 + 10, 5.0]]
    assert points("old") == [[0.0, 6.0]]
    assert reader.hosts()[0]["skewed_records"] == 2
    [series] = reader.metrics("web-01", "labels", 0, 1e12, 10).items
    assert series["labels"] == labels

    log, check = reader.events("web-01", None, 0, 10).items  # newest first
    assert log["kind"] == "log" and log["ts"] == T0 + 10
    assert log["line"] == records[7]["line"]
    assert log["count"] == 2**64 - 1 and log["fields"] == {"ключ": [1, -(2**63)]}
    assert log["ratio"] is None
    assert check["kind"] == "check" and check["name"] == "api" and check["latency"] is None
    assert [e["kind"] for e in reader.events("web-01", "check", 0, 10).items] == ["check"]
    assert not any(
        isinstance(v, float) and not math.isfinite(v) for e in (log, check) for v in e.values()
    )


def test_queries_filter_and_limit(store, reader):
    store.ingest(wire(1, 10), T0)
    store.ingest(wire(1, 2, host="db-01"), T0)
    events = [{"kind": "event", "type": "lifecycle", "ts": T0 + i, "n": i} for i in range(5)]
    store.ingest(wire(1, records=events, stream=S2), T0)
    assert seqs(reader, "db-01") == [1, 2]
    got = reader.metrics("web-01", "m", T0 + 3, T0 + 5, 100).items
    assert sorted(p[0] - T0 for s in got for p in s["points"]) == [3, 4, 5]
    assert sum(len(s["points"]) for s in reader.metrics(None, None, 0, 1e12, 4).items) == 4
    assert reader.metrics("nobody", None, 0, 1e12, 100).items == []
    assert [e["n"] for e in reader.events("web-01", "lifecycle", 0, 3).items] == [4, 3, 2]
    assert [e["n"] for e in reader.events(None, None, T0 + 3, 100).items] == [4, 3]
    assert reader.events("web-01", "alert", 0, 100).items == []


def test_a_failed_write_stores_nothing_and_keeps_the_mark(store, reader, monkeypatch):
    store.ingest(wire(1, 2), T0)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "_seen", fail)  # the transaction's last step
    with pytest.raises(OSError):
        store.ingest(wire(3, 2), T0 + 1)
    monkeypatch.undo()
    assert seqs(reader) == [1, 2]
    assert store.ingest(wire(3, 2), T0 + 2) == Ingested(4, 2)  # the retry stores it
    assert seqs(reader) == [1, 2, 3, 4]


def test_sqlite_opens_a_database_written_by_earlier_hubs(tmp_path):
    """The schema as hubs before the storage interface wrote it, with a row in
    each table: it opens, its data reads back, and new rows look the same."""
    db = sqlite3.connect(tmp_path / "hub.db")
    db.executescript(
        """
        CREATE TABLE hosts (id TEXT PRIMARY KEY, first_seen REAL NOT NULL,
            last_seen REAL NOT NULL, agent_version TEXT NOT NULL, clock_offset REAL NOT NULL);
        CREATE TABLE streams (host TEXT NOT NULL, stream TEXT NOT NULL,
            last_seq INTEGER NOT NULL, lost INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (host, stream));
        CREATE TABLE metrics (host TEXT NOT NULL, name TEXT NOT NULL, labels TEXT NOT NULL,
            ts REAL NOT NULL, value REAL, type TEXT NOT NULL);
        CREATE INDEX metrics_by_series ON metrics (host, name, ts);
        CREATE TABLE events (host TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
            body TEXT NOT NULL);
        CREATE INDEX events_by_time ON events (host, ts);
        INSERT INTO hosts VALUES ('web-01', 1.0, 2.0, '0.0.9', 0.5);
        INSERT INTO streams VALUES ('web-01', 'old', 7, 1);
        INSERT INTO metrics VALUES ('web-01', 'm', '{"seq":"7","\\u00e9":"x"}', 7.0, 7.0, 'gauge');
        INSERT INTO events VALUES ('web-01', 3.0, 'log',
            '{"kind": "event", "type": "log", "ts": 3.0, "line": "x"}');
        """
    )
    db.close()
    store = SQLiteStore(tmp_path / "hub.db")
    reader = store.reader()
    try:
        assert store.ingest(wire(6, 3, stream="old"), 10.0) == Ingested(8, 1)
        assert streams(reader) == [{"stream": "old", "last_seq": 8, "lost": 1}]
        assert reader.hosts()[0]["first_seen"] == 1.0
        [old] = reader.metrics("web-01", "m", 0, 7, 10).items
        assert old["labels"] == {"seq": "7", "é": "x"}
        assert reader.events("web-01", "log", 0, 10).items[0]["line"] == "x"
        store.ingest(wire(1, records=[metric(1, labels={"é": "x", "seq": "7"})], stream="n"), 11.0)
    finally:
        reader.close()
        store.close()
    # one string per series, as before: a new sample joins the old series
    db = sqlite3.connect(tmp_path / "hub.db")
    assert db.execute("SELECT DISTINCT labels FROM metrics WHERE ts < 8").fetchall() == [
        ('{"seq":"7","\\u00e9":"x"}',)
    ]
    db.close()


def test_reads_page_through_everything_once(store, reader):
    store.ingest(wire(1, 25), T0)
    store.ingest(wire(1, 10, host="db-01"), T0)
    events = [{"kind": "event", "type": "log", "ts": T0 + i // 3, "n": i} for i in range(10)]
    store.ingest(wire(1, records=events, stream=S2), T0)
    got, after = [], None
    while True:
        page = reader.metrics(None, "m", 0, 1e12, 4, after)
        assert sum(len(s["points"]) for s in page.items) <= 4
        got += [(s["host"], int(s["labels"]["seq"])) for s in page.items for _ in s["points"]]
        if page.next is None:
            break
        after = page.next
    assert sorted(got) == [("db-01", i) for i in range(1, 11)] + [
        ("web-01", i) for i in range(1, 26)
    ]
    ns, after = [], None
    while True:
        page = reader.events("web-01", None, 0, 3, after)
        ns += [e["n"] for e in page.items]
        if page.next is None:
            break
        after = page.next
    assert ns == sorted(range(10), key=lambda i: (i // 3, i), reverse=True)
    huge = base64.urlsafe_b64encode(("[" + "9" * 400 + ",1]").encode()).decode()
    for bad in ("", "x", "W10", "WzEsMl0", '["a"]'):
        with pytest.raises(BadCursor):
            reader.metrics(None, None, 0, 1e12, 4, bad)
    with pytest.raises(BadCursor):  # float() of it would overflow: a 500 once
        reader.events(None, None, 0, 3, huge.rstrip("="))


def test_an_events_page_ends_early_to_bound_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "PAGE_BYTES", 1000)
    store = SQLiteStore(tmp_path / "hub.db")
    reader = store.reader()
    try:
        events = [
            {"kind": "event", "type": "log", "ts": T0 + i, "line": "x" * 400} for i in range(5)
        ]
        store.ingest(wire(1, records=events), T0)
        first = reader.events(None, None, 0, 100)
        assert len(first.items) == 2 and first.next is not None  # 2 x ~450 bytes fit
        rest = reader.events(None, None, 0, 100, first.next)
        assert len(rest.items) == 2
        last = reader.events(None, None, 0, 100, rest.next)
        assert [e["ts"] for e in last.items] == [T0] and last.next is None
    finally:
        reader.close()
        store.close()


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x17" * len(data))
    else:  # a flipped page: the file opens, its b-tree does not hold together
        page = 4096 * 2
        path.write_bytes(data[:page] + bytes(b ^ 0xFF for b in data[page : page + 4096]))


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped"])
def test_a_damaged_database_is_set_aside_and_a_fresh_one_made(tmp_path, how):
    path = tmp_path / "hub.db"
    store = SQLiteStore(path)
    store.ingest(wire(1, 3000), T0)
    store.close()
    damage(path, how)
    store = open_store(path)
    try:
        [aside] = tmp_path.glob("hub.db.*.corrupt")
        assert aside.stat().st_size > 0
        assert store.ingest(wire(1, 2), T0) == Ingested(2, 2)  # a fresh stream mark
        assert store.probe().error is None
    finally:
        store.close()
    reopened = open_store(path)  # a sound database is left as it is
    reopened.close()
    assert len(list(tmp_path.glob("hub.db.*.corrupt"))) == 1


def test_a_store_that_cannot_write_says_so_and_keeps_nothing(tmp_path):
    path = tmp_path / "hub.db"
    store = SQLiteStore(path)
    store.ingest(wire(1, 2), T0)
    reader = store.reader()
    store.db.execute("PRAGMA query_only=1")  # as a read-only file or a full disk refuses
    try:
        with pytest.raises(Unwritable):
            store.ingest(wire(3, 2), T0)
        outcome = store.probe()
        assert outcome.error and store.last_write == outcome
        store.db.execute("PRAGMA query_only=0")
        assert store.probe().error is None
        assert store.ingest(wire(3, 2), T0) == Ingested(4, 2)
        assert seqs(reader) == [1, 2, 3, 4]
    finally:
        reader.close()
        store.close()


def test_series_limits_refuse_the_batch_whole_and_keep_the_mark(store, reader):
    store.limits = Limits(max_series_per_host=5, max_new_series_per_batch=3, retention=0.0)
    with pytest.raises(SeriesLimit, match=r"adds over 3 new series.*at most 3 per batch"):
        store.ingest(wire(1, 4), T0)  # each record its own series (label seq)
    assert seqs(reader) == [] and reader.hosts() == []  # nothing stored, no mark
    assert store.ingest(wire(1, 3), T0) == Ingested(3, 3)
    with pytest.raises(
        SeriesLimit, match="has 3 series and this batch adds more than 2; at most 5"
    ):
        store.ingest(wire(4, 3), T0)
    assert streams(reader)[0]["last_seq"] == 3
    # known series take new points; a replay is acknowledged, never refused
    again = [metric(i, ts=T0 + 100 + i) for i in (1, 2, 3)]
    assert store.ingest(wire(4, records=again), T0) == Ingested(6, 3)
    assert store.ingest(wire(1, 3), T0) == Ingested(6, 0)
    assert store.ingest(wire(7, 2), T0) == Ingested(8, 2)  # 5 series: at the limit
    store.note_refused("web-01")
    store.note_refused("db-01")
    assert [h["refused_batches"] for h in reader.hosts()] == [0]  # counted at the next write
    store.ingest(wire(9, records=[metric(1, ts=T0 + 200)]), T0)
    assert {h["id"]: h["refused_batches"] for h in reader.hosts()} == {"db-01": 1, "web-01": 1}


def test_retention_expires_points_events_and_series_a_chunk_at_a_time(store, reader):
    events = [{"kind": "event", "type": "log", "ts": T0 + i, "n": i} for i in range(4)]
    store.ingest(wire(1, 6), T0)  # series seq=1..6 at T0+1..T0+6
    store.ingest(wire(1, records=events, stream=S2), T0)
    cutoff = T0 + 3.5
    assert store.expire(cutoff, 2) == 2  # one short chunk
    total = 2
    while (n := store.expire(cutoff, 2)) > 0:
        total += n
    assert total == 3 + 4 + 3  # points seq 1-3, events 0-3, series 1-3
    assert seqs(reader) == [4, 5, 6]
    assert reader.events(None, None, 0, 10).items == []
    # the expired series may come back: they are new again, and counted
    store.limits = Limits(max_series_per_host=4, retention=0.0)
    with pytest.raises(SeriesLimit):
        store.ingest(wire(7, records=[metric(1, ts=T0 + 9), metric(2, ts=T0 + 9)]), T0)


def test_a_group_commits_each_batch_with_its_own_outcome(store, reader, monkeypatch):
    """Group commit (Store.ingest_many): one transaction, each batch's
    outcome in its place; a refused or failing batch is rolled back alone."""
    store.limits = Limits(max_new_series_per_batch=3, retention=0.0)
    roll = store._roll

    def roll_unless_bad(host: str, rollups: Any) -> None:
        if host == "bad":
            raise RuntimeError("a bug that only this batch meets")
        roll(host, rollups)

    monkeypatch.setattr(store, "_roll", roll_unless_bad)
    group = [
        wire(1, 2),
        wire(1, 4, host="db-01"),  # 4 new series: over the limit
        wire(3, 2),  # the same stream, further on
        wire(1, 2),  # a replay inside the group
        wire(1, 2, host="bad"),  # fails after its rows are written
    ]
    out = store.ingest_many([store.prepare(b, T0) for b in group])
    assert out[0] == Ingested(2, 2) and out[2] == Ingested(4, 2)
    assert out[3] == Ingested(2, 0)  # written in (host, stream, seq) order: after the first
    assert isinstance(out[1], SeriesLimit) and isinstance(out[4], RuntimeError)
    assert seqs(reader) == [1, 2, 3, 4]
    assert [h["id"] for h in reader.hosts()] == ["web-01"]  # no row, no mark of the others
    monkeypatch.undo()
    assert store.ingest(wire(1, 2, host="bad"), T0) == Ingested(2, 2)  # its retry


def test_a_group_that_cannot_commit_stores_none_of_its_batches(store, reader, monkeypatch):
    seen = store._seen

    def full_disk_at_db(host: str, *args: Any) -> None:
        if host == "db-01":
            raise Unwritable("disk full")
        seen(host, *args)

    monkeypatch.setattr(store, "_seen", full_disk_at_db)
    with pytest.raises(Unwritable):
        store.ingest_many(
            [store.prepare(wire(1, 2), T0), store.prepare(wire(1, 2, host="db-01"), T0)]
        )
    assert seqs(reader) == [] and reader.hosts() == []
    monkeypatch.undo()
    both = [store.prepare(wire(1, 2), T0), store.prepare(wire(1, 2, host="db-01"), T0)]
    assert store.ingest_many(both) == [
        Ingested(2, 2),
        Ingested(2, 2),
    ]


def test_a_known_series_set_skips_the_series_check(store, reader, monkeypatch):
    """A host's batch with the same series as a committed one needs no
    lookup per series; a new set, an expiry or an uncommitted one does."""
    lookups: list[str] = []
    new_series = store._new_series

    def counted(host: str, *args: Any, **kwargs: Any) -> int:
        lookups.append(host)
        return new_series(host, *args, **kwargs)

    monkeypatch.setattr(store, "_new_series", counted)
    same = [metric(1, ts=T0 + 1), metric(2, ts=T0 + 1)]
    later = [metric(1, ts=T0 + 2), metric(2, ts=T0 + 2)]
    store.ingest(wire(1, records=same), T0)
    store.ingest(wire(3, records=later), T0)
    if not store.remembers_series:  # hubs share it: another's retention may delete them
        assert lookups == ["web-01", "web-01"]
        return
    assert lookups == ["web-01"]  # the first batch only
    store.ingest(wire(5, records=[metric(3, ts=T0 + 3)]), T0)  # another set
    assert lookups == ["web-01", "web-01"]
    store.expire(T0 + 1.5, 100)  # series may go: the sets are forgotten
    store.ingest(wire(6, records=[metric(1, ts=T0 + 4), metric(2, ts=T0 + 4)]), T0)
    assert len(lookups) == 3
    store.limits = Limits(retention=0.0)  # a reload: every set is checked again
    store.ingest(wire(8, records=[metric(1, ts=T0 + 5), metric(2, ts=T0 + 5)]), T0)
    assert len(lookups) == 4
    # a host that goes over the limit with a set it never had committed is refused
    store.limits = Limits(max_series_per_host=2, retention=0.0)
    with pytest.raises(SeriesLimit):
        store.ingest(wire(10, records=[metric(9, ts=T0 + 5)]), T0)


def test_a_crafted_name_cannot_pass_for_a_known_set_of_series(store, reader):
    """A name holding a NUL and a newline once read, in the set's digest,
    as two series: a host could store it, then the two real series without
    their check. The digest now prefixes each name with its length."""
    store.limits = Limits(max_series_per_host=2, retention=0.0)
    odd = {"kind": "metric", "name": "p\0{}\nr", "labels": {}, "value": 1, "ts": T0}
    assert store.ingest(wire(1, records=[odd]), T0) == Ingested(1, 1)
    two = [{**odd, "name": "p"}, {**odd, "name": "r"}]
    with pytest.raises(SeriesLimit, match="max_series_per_host"):
        store.ingest(wire(2, records=two), T0)


def test_one_batch_the_backend_refuses_fails_alone_in_its_group(store, reader):
    """A label near the validator's limit: SQLite stores it, PostgreSQL
    refuses it (its index rows are at most about 2.7 kB); either way the
    other batches of the group are stored and answered."""
    huge = metric(1, labels={"k": secrets.token_urlsafe(6000)})
    group = [wire(1, 2), wire(1, records=[huge], host="db-01"), wire(1, 2, host="app-01")]
    out = store.ingest_many([store.prepare(b, T0) for b in group])
    assert out[0] == out[2] == Ingested(2, 2)
    assert isinstance(out[1], Exception) or out[1] == Ingested(1, 1), out[1]
    assert seqs(reader, "web-01") == seqs(reader, "app-01") == [1, 2]


def test_a_batch_larger_than_one_statement_is_stored_whole(store, reader):
    """SQLite writes a batch's rows as multi-row statements of at most
    MAX_PARAMS parameters: 1,000 series of 3 points, NaN and infinities
    among them, take several, and every point and rollup is there once."""
    records = [
        metric(i, ts=T0 + 10 * k, value=math.nan if i == 7 else (-math.inf if i == 8 else i + k))
        for k in range(3)
        for i in range(1, 1001)
    ]
    assert store.ingest(wire(1, records=records), T0) == Ingested(3000, 3000)
    assert seqs(reader) == sorted(list(range(1, 1001)) * 3)
    by_seq = {
        s["labels"]["seq"]: s["points"]
        for s in reader.metrics("web-01", "m", 0, 1e12, 100_000).items
    }
    assert by_seq["500"] == [[T0, 500.0], [T0 + 10, 501.0], [T0 + 20, 502.0]]
    assert by_seq["7"] == [[T0, None], [T0 + 10, None], [T0 + 20, None]]
    assert by_seq["8"] == [[T0, None], [T0 + 10, None], [T0 + 20, None]]  # JSON has no -inf
    rolled = reader.metrics("web-01", "m", 0, 1e12, 100_000, step=300.0, agg="count").items
    assert len(rolled) == 1000 - 1  # the NaN series has no rollup
    assert {s["labels"]["seq"]: s["points"][0][1] for s in rolled}["500"] == 3.0


def test_label_sets_are_encoded_once_but_long_ones_are_not_kept():
    from hub.store import _LABELS, _labels_json

    short = {"mountpoint": "/", "device": "sda1"}
    assert _labels_json(short) == '{"device":"sda1","mountpoint":"/"}'
    assert _LABELS[tuple(short.items())] == '{"device":"sda1","mountpoint":"/"}'
    long = {"k": "é" * 100_000}  # 600 kB of JSON: a cache of 8192 of them would be 5 GB
    assert _labels_json(long) == '{"k":"' + "\\u00e9" * 100_000 + '"}'
    assert tuple(long.items()) not in _LABELS
