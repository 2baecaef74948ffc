"""Rollups (hub/store/__init__.py): exact for the points they cover against
a direct computation over the raw points, idempotent (replays, a failed
write, a backfill run twice or cut short), and a read across the boundary
between rolled-up and not-yet-rolled-up points gives each bucket once."""

from __future__ import annotations

import math
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hub.store import AGGREGATES, STEP, Ingested, Limits, Reader, Store, bucket
from hub.store.sqlite import SQLiteStore
from tests.hub.conftest import KEEP
from tests.hub.test_store import S1, S2, T0, wire

STATE_V1 = Path(__file__).parents[1] / "fixtures" / "state_v1" / "hub" / "hub.db"


def point(name: str, labels: dict[str, str], ts: float, value: float) -> dict[str, Any]:
    return {"kind": "metric", "name": name, "labels": labels, "ts": ts, "value": value}


def load(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """`n` points of 2 names x 3 label sets over 2 hours, shuffled in time (late
    points, backlogs), with repeated timestamps and some NaN values."""
    out = []
    for _ in range(n):
        ts = T0 + rng.choice([rng.uniform(0, 7200), float(rng.randrange(0, 7200, 300))])
        value = rng.choice([rng.uniform(-1e3, 1e3), float(rng.randrange(10)), math.nan])
        out.append(point(rng.choice("ab"), {"k": rng.choice("xyz")}, ts, value))
    return out


def raw(reader: Reader, host: str | None = None) -> dict[tuple[str, str, str], list]:
    """Every raw point, per series, in (ts, storage) order: what rollups must match."""
    out: dict[tuple[str, str, str], list] = {}
    cursor = None
    while True:
        page = reader.metrics(host, None, 0, 1e12, 97, cursor)
        for s in page.items:
            key = (s["host"], s["name"], str(sorted(s["labels"].items())))
            out.setdefault(key, []).extend(s["points"])
        if page.next is None:
            return out
        cursor = page.next


def expected(reader: Reader, step: float, agg: str) -> dict[tuple, float | None]:
    """Each series and bucket of `step`: `agg` computed directly over the raw points."""
    out: dict[tuple, float | None] = {}
    for key, points in raw(reader).items():
        buckets: dict[float, list[float]] = {}
        newest: dict[float, tuple[float, float]] = {}
        for ts, value in points:  # NaN reads back as None: not counted
            if value is not None:
                b = bucket(ts, step)
                buckets.setdefault(b, []).append(value)
                newest[b] = max(newest.get(b, (ts, value)), (ts, value))
        for b, values in buckets.items():
            out[(*key, b)] = {
                "avg": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
                "last": newest[b][1],  # the newest; of equal times, the greatest
                "count": float(len(values)),
            }[agg]
    return out


def rolled(
    reader: Reader, step: float, agg: str, limit: int = 10_000, **query: Any
) -> dict[tuple, float | None]:
    """What the store answers with `step`, page by page; a bucket read twice fails."""
    out: dict[tuple, float | None] = {}
    cursor = None
    while True:
        page = reader.metrics(
            query.get("host"),
            query.get("name"),
            query.get("since", 0),
            1e12,
            limit,
            cursor,
            step,
            agg,
        )
        assert sum(len(s["points"]) for s in page.items) <= limit
        for s in page.items:
            key = (s["host"], s["name"], str(sorted(s["labels"].items())))
            for ts, value in s["points"]:
                assert (*key, ts) not in out, f"bucket {ts} of {key} read twice"
                out[(*key, ts)] = value
        if page.next is None:
            return out
        cursor = page.next


def same(got: dict[tuple, float | None], want: dict[tuple, float | None]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-9), key


def ingest_in_batches(store: Store, records: list[dict[str, Any]], size: int, host: str) -> None:
    seq = 1
    for i in range(0, len(records), size):
        chunk = records[i : i + size]
        assert store.ingest(wire(seq, records=chunk, host=host), T0).stored == len(chunk)
        seq += len(chunk)


def test_rollups_are_exact_for_every_aggregate_and_step(store, reader):
    rng = random.Random(14)
    for host in ("web-01", "db-01"):
        ingest_in_batches(store, load(rng, 1500), 37, host)
    for step in (STEP, 3600.0, 86400.0):
        for agg in AGGREGATES:
            same(rolled(reader, step, agg), expected(reader, step, agg))
    # pages of any size give the same buckets, each once
    for limit in (1, 7, 100):
        same(rolled(reader, STEP, "last", limit), expected(reader, STEP, "last"))
    # filters and since: whole buckets from the one holding `since`
    got = rolled(reader, 3600.0, "count", host="db-01", name="a", since=T0 + 3601)
    want = {k: v for k, v in expected(reader, 3600.0, "count").items() if k[:2] == ("db-01", "a")}
    same(got, {k: v for k, v in want.items() if k[3] >= T0 + 3600})


def test_a_wide_step_ends_pages_on_rows_read_and_still_gives_each_bucket_once(
    store, reader, monkeypatch
):
    """A day's bucket folds 288 rollup rows: a page ends after MAX_ROLLUP_ROWS
    rows read, not only after `limit` points, so its work stays bounded."""
    import hub.store.sqlite

    ingest_in_batches(store, load(random.Random(7), 1500), 50, "web-01")
    want = expected(reader, 86400.0, "avg")
    pages: list[int] = []
    real = reader.metrics

    def counted(*args: Any, **kwargs: Any) -> Any:
        page = real(*args, **kwargs)
        pages.append(sum(len(s["points"]) for s in page.items))
        return page

    monkeypatch.setattr(hub.store.sqlite, "MAX_ROLLUP_ROWS", 5)  # postgres reads it there too
    monkeypatch.setattr(reader, "metrics", counted)
    same(rolled(reader, 86400.0, "avg"), want)
    assert len(pages) > 1 and all(n >= 1 for n in pages[:-1])  # cut by rows, never empty


def test_rollups_are_idempotent_under_replays_and_failed_writes(store, reader, monkeypatch):
    records = load(random.Random(5), 400)
    ingest_in_batches(store, records[:200], 50, "web-01")
    before = rolled(reader, STEP, "avg")
    # replays of what is held, and an overlap: nothing is counted twice
    assert store.ingest(wire(1, records=records[:100]), T0) == Ingested(200, 0)
    assert store.ingest(wire(151, records=records[150:250]), T0) == Ingested(250, 50)
    # a write that fails after the rollups were merged keeps none of it
    monkeypatch.setattr(store, "_seen", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        store.ingest(wire(251, records=records[250:]), T0)
    monkeypatch.undo()
    assert rolled(reader, STEP, "avg") != before
    store.ingest(wire(251, records=records[250:]), T0)
    for agg in AGGREGATES:
        same(rolled(reader, STEP, agg), expected(reader, STEP, agg))
    assert rolled(reader, STEP, "count") == {
        k: float(v) for k, v in expected(reader, STEP, "count").items()
    }


def test_a_late_point_joins_its_old_bucket_after_the_raw_points_expired(store, reader):
    store.ingest(wire(1, records=[point("a", {}, T0 + 10, 1.0), point("a", {}, T0 + 20, 5.0)]), T0)
    while store.expire(T0 + 86400, 1) > 0:  # every raw point gone, the rollup kept
        pass
    assert raw(reader) == {}
    store.ingest(wire(3, records=[point("a", {}, T0 + 15, 3.0)]), T0)  # a backlog, late
    [series] = reader.metrics(None, "a", 0, 1e12, 10, None, STEP, "avg").items
    assert series["points"] == [[T0, 3.0]]
    assert reader.metrics(None, "a", 0, 1e12, 10, None, STEP, "last").items[0]["points"] == [
        [T0, 5.0]
    ]


def test_retention_keeps_events_and_rollups_for_their_own_time(store, reader):
    events = [{"kind": "event", "type": "log", "ts": T0 + 400 * i, "n": i} for i in range(4)]
    store.ingest(wire(1, records=[point("a", {}, T0 + 400 * i, i) for i in range(4)]), T0)
    store.ingest(wire(1, records=events, stream=S2), T0)
    # raw points before T0+1000, events before T0+500, rollups before T0+600
    while store.expire(T0 + 1000, 2, T0 + 500, T0 + 600) > 0:
        pass
    assert [p[0] for s in raw(reader).values() for p in s] == [T0 + 1200]
    assert [e["n"] for e in reader.events(None, None, 0, 10).items] == [3, 2]
    assert sorted(rolled(reader, STEP, "count")) == [
        ("web-01", "a", "[]", T0 + 600),
        ("web-01", "a", "[]", T0 + 1200),
    ]


def make_old(path: Path, records: list[dict[str, Any]]) -> None:
    """A database as hubs before rollups wrote it: these points, no rollups."""
    store = SQLiteStore(path)
    store.limits = KEEP
    ingest_in_batches(store, records, 64, "web-01")
    store.close()
    db = sqlite3.connect(path)
    # nor schema versions: those came later still
    db.executescript("DROP TABLE rollups; DROP TABLE backfill; DROP TABLE schema_version;")
    db.close()


def test_an_older_database_is_backfilled_exactly_and_read_across_the_boundary(
    tmp_path, monkeypatch
):
    path = tmp_path / "hub.db"
    make_old(path, load(random.Random(9), 600))
    store = SQLiteStore(path)
    store.limits = KEEP
    reader = store.reader()
    try:
        # before any backfill, reads see the raw points as rollups; new
        # points land in the rollups at ingest, in the same buckets
        store.ingest(wire(1, records=load(random.Random(10), 100), stream=S2), T0)
        for agg in AGGREGATES:
            same(rolled(reader, STEP, agg, limit=13), expected(reader, STEP, agg))
        assert store.expire(T0 + 1e6, 250) == 250  # a chunk of the backfill, nothing deleted
        assert sum(len(p) for p in raw(reader).values()) == 700
        # half rolled up: each bucket once, from both sides
        for agg in AGGREGATES:
            same(rolled(reader, 3600.0, agg, limit=5), expected(reader, 3600.0, agg))
        # a crash in the middle of a chunk leaves it to be done again, whole
        real = store._roll
        monkeypatch.setattr(store, "_roll", lambda *a: (real(*a), 1 / 0))
        with pytest.raises(ZeroDivisionError):
            store.expire(-math.inf, 250)
        monkeypatch.undo()
        for agg in AGGREGATES:
            same(rolled(reader, STEP, agg), expected(reader, STEP, agg))
        assert store.expire(-math.inf, 250) == 250
        assert store.expire(-math.inf, 250) == 100  # the end: the backfill is done
        assert store.expire(-math.inf, 250) == 0  # and never runs again
        assert sqlite3.connect(path).execute("SELECT count(*) FROM backfill").fetchone() == (0,)
        for agg in AGGREGATES:
            same(rolled(reader, STEP, agg), expected(reader, STEP, agg))
    finally:
        reader.close()
        store.close()
    # a hub opened again neither backfills again nor loses the rollups
    store = SQLiteStore(path)
    reader = store.reader()
    try:
        assert store.expire(-math.inf, 250) == 0
        same(rolled(reader, STEP, "avg"), expected(reader, STEP, "avg"))
    finally:
        reader.close()
        store.close()


def test_the_state_v1_hub_database_opens_and_is_rolled_up(tmp_path):
    """A database a released hub wrote (tests/fixtures/state_v1)."""
    path = tmp_path / "hub.db"
    shutil.copy(STATE_V1, path)
    store = SQLiteStore(path)
    store.limits = Limits(retention=0.0)
    reader = store.reader()
    try:
        points = sum(len(p) for p in raw(reader).values())
        assert points > 0
        want = {agg: expected(reader, STEP, agg) for agg in AGGREGATES}
        for agg in AGGREGATES:
            same(rolled(reader, STEP, agg), want[agg])
        while store.expire(-math.inf, 100) > 0:
            pass
        for agg in AGGREGATES:
            same(rolled(reader, STEP, agg), want[agg])
    finally:
        reader.close()
        store.close()


def test_a_step_cursor_is_for_its_step_only(store, reader):
    store.ingest(wire(1, records=[point("a", {}, T0 + 600 * i, i) for i in range(5)]), T0)
    page = reader.metrics(None, None, 0, 1e12, 2, None, STEP, "avg")
    assert page.next is not None
    from hub.store import BadCursor

    with pytest.raises(BadCursor):
        reader.metrics(None, None, 0, 1e12, 2, page.next, 3600.0, "avg")
    with pytest.raises(BadCursor):
        reader.metrics(None, None, 0, 1e12, 2, page.next)  # a raw read
    raw_page = reader.metrics(None, None, 0, 1e12, 2)
    with pytest.raises(BadCursor):
        reader.metrics(None, None, 0, 1e12, 2, raw_page.next, STEP, "avg")
    assert S1  # the suite's stream
