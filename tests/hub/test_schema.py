"""Schema versions (both backends) and what only a shared store has: two
stores on one PostgreSQL migrating, ingesting one stream and leading jobs
at once, and a lost connection (hub/store/postgres.py)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.core import protocol
from hub.store import Ingested, Limits, Unwritable
from hub.store.sqlite import MIGRATIONS, SQLiteStore
from tests.conftest import wait_for

STATE_V1 = Path(__file__).parents[1] / "fixtures" / "state_v1" / "hub" / "hub.db"
S1 = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
T0 = 1767225600.0


def wire(first: int, n: int, host: str = "web-01") -> protocol.Batch:
    recs = [
        {"kind": "metric", "name": "m", "labels": {"k": str(i % 5)}, "value": first + i,
         "ts": T0 + first + i}
        for i in range(n)
    ]  # fmt: skip
    return protocol.decode_batch(protocol.encode_batch(host, S1, first, recs, "0.1.0", T0))


def test_a_released_sqlite_database_is_migrated_to_the_current_version(tmp_path):
    path = tmp_path / "hub.db"
    shutil.copy(STATE_V1, path)
    assert "schema_version" not in {
        r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")
    }
    store = SQLiteStore(path)
    store.limits = Limits(retention=0.0)
    try:
        assert store.ingest(wire(1, 3, host="new-01"), T0) == Ingested(3, 3)
    finally:
        store.close()
    versions = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v, _ in MIGRATIONS]
    SQLiteStore(path).close()  # opened again: nothing to do, nothing applied twice
    assert sqlite3.connect(path).execute("SELECT count(*) FROM schema_version").fetchone() == (
        len(MIGRATIONS),
    )


def test_a_database_newer_than_the_hub_is_refused_by_name(tmp_path):
    path = tmp_path / "hub.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (99, 0)")
    db.commit()
    db.close()
    with pytest.raises(OSError, match="schema version 99; this hub knows up to 1"):
        SQLiteStore(path)


# -- PostgreSQL: several hubs -----------------------------------------------------


@pytest.fixture
def dsn(pg_server: Any) -> str:
    return str(pg_server.database())


def pg(dsn: str) -> Any:
    from hub.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    store.limits = Limits(retention=0.0)
    return store


def test_hubs_starting_together_on_an_empty_database_migrate_it_once(dsn, pg_server):
    stores: list[Any] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(4)

    def start() -> None:
        gate.wait()
        try:
            stores.append(pg(dsn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(stores) == 4
        with pg_server.connect(dsn.split("dbname=")[1]) as conn:
            versions = conn.execute("SELECT version FROM schema_version ORDER BY version")
            assert versions.fetchall() == [(1,), (2,)]
    finally:
        for s in stores:
            s.close()


def test_a_version_1_postgres_database_is_migrated_and_its_rows_keep_their_ids(
    dsn, pg_server, monkeypatch
):
    """Version 2 (forwarding): batches, cursors and the rowid ranges, which
    start above every row stored before."""
    from hub.store import postgres

    monkeypatch.setattr(postgres, "MIGRATIONS", postgres.MIGRATIONS[:1])
    pg(dsn).close()  # a database of version 1, with rows stored as version 1 did
    with pg_server.connect(dsn.split("dbname=")[1]) as conn:
        conn.execute(
            "INSERT INTO metrics (host, name, labels, ts, value, type) SELECT 'web-01', 'm',"
            " '{}', %s + i, i, 'gauge' FROM generate_series(1, 50) AS i",
            (T0,),
        )
        conn.execute("INSERT INTO streams VALUES ('web-01', %s, 50, 0)", (S1,))
    monkeypatch.undo()
    store = pg(dsn)
    try:
        assert store.version == 2
        store.ingest(wire(51, 10), T0)
        reader = store.reader()
        [span] = reader.batches_after("web-01", S1, 0, 10)  # the old rows name no batch
        assert span.seq == 60 and span.hi - span.lo == 9 and span.lo > 50
        assert len(reader.batch_rows(span.lo, span.hi, 100)) == 10
        reader.close()
    finally:
        store.close()


def test_two_stores_ingesting_one_stream_at_once_store_each_record_once(dsn):
    a, b = pg(dsn), pg(dsn)
    try:
        gate = threading.Barrier(2)
        got: list[Ingested] = []

        def send(store: Any, batch: protocol.Batch) -> None:
            gate.wait()
            got.append(store.ingest(batch, T0))

        for first in range(1, 2001, 100):
            got.clear()
            # the same batch through both hubs at the same instant (an agent
            # that gave up on one hub while it was storing the batch)
            threads = [threading.Thread(target=send, args=(s, wire(first, 100))) for s in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(i.stored for i in got) == [0, 100], got
        reader = a.reader()
        try:
            points = [
                p[1] for s in reader.metrics("web-01", "m", 0, 1e12, 100_000).items
                for p in s["points"]
            ]  # fmt: skip
            assert sorted(points) == [float(v) for v in range(1, 2001)]
            [host] = reader.hosts()
            assert host["streams"] == [{"stream": S1, "last_seq": 2000, "lost": 0}]
            # the rollups merged from both hubs count each point once
            [rolled] = [
                s for s in reader.metrics("web-01", "m", 0, 1e12, 100_000, None, 1e6, "count")
                .items if s["labels"] == {"k": "0"}
            ]  # fmt: skip
            assert sum(v for _, v in rolled["points"]) == 400
        finally:
            reader.close()
    finally:
        a.close()
        b.close()


def test_one_store_leads_each_job_and_another_takes_over_when_it_is_gone(dsn):
    a, b = pg(dsn), pg(dsn)
    try:
        assert a.lead("liveness") and a.lead("liveness")  # held, and still held
        assert not b.lead("liveness")
        assert b.lead("retention") and not a.lead("retention")  # each job its own
        a.close()  # its session ends (a hub that dies): its locks go with it
        wait_for(lambda: b.lead("liveness"), 30, "b taking over once a's session has ended")
    finally:
        b.close()


def test_a_lost_connection_is_unwritable_then_the_next_write_reconnects(dsn, pg_server):
    store = pg(dsn)
    try:
        assert store.ingest(wire(1, 2), T0) == Ingested(2, 2)
        pid = store.db.info.backend_pid
        with pg_server.connect("postgres") as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(Unwritable):
            store.ingest(wire(3, 2), T0)
        assert store.last_write is not None and store.last_write.error
        assert store.ingest(wire(3, 2), T0) == Ingested(4, 2)  # a new connection
        assert store.probe().error is None
    finally:
        store.close()


def test_a_read_only_database_is_unwritable_and_stores_nothing(dsn):
    store = pg(dsn)
    try:
        store.db.execute("SET default_transaction_read_only = on")
        with pytest.raises(Unwritable, match="read-only"):
            store.ingest(wire(1, 2), T0)
        store.db.execute("SET default_transaction_read_only = off")
        assert store.ingest(wire(1, 2), T0) == Ingested(2, 2)
    finally:
        store.close()


def test_errors_and_logs_never_show_the_password():
    pytest.importorskip("psycopg")
    from hub.store.postgres import PostgresStore, describe

    dsn = "host=127.0.0.1 port=1 user=vigil password=s3cret dbname=x"
    assert "s3cret" not in describe(dsn) and "host=127.0.0.1" in describe(dsn)
    with pytest.raises(OSError) as info:
        PostgresStore(dsn, connect_timeout=1)
    assert "s3cret" not in str(info.value) and "port=1" in str(info.value)


@pytest.mark.parametrize(
    ("store", "key"),
    [
        ('backend = "postgres"', "store.dsn"),
        ('backend = "postgres"\ndsn = "host=x"\ndsn_file = "/x"', "store.dsn_file"),
        ('dsn = "host=x"', "store.dsn"),
        ('backend = "mysql"', "store.backend"),
        ('backend = "postgres"\ndsn = "host=x"\npool_size = 2', "store.pool_size"),
        ('backend = "postgres"\ndsn_file = "MISSING"', "store.dsn_file"),
        ('backend = "postgres"\ndsn_file = "EMPTY"', "store.dsn_file"),
    ],
)
def test_check_config_names_the_store_key_and_connects_to_nothing(tmp_path, store, key):
    from tests.e2e.harness import vigil

    (tmp_path / "empty").write_text("\n")
    store = store.replace("MISSING", str(tmp_path / "nope")).replace(
        "EMPTY", str(tmp_path / "empty")
    )
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n[store]\n{store}\n')
    result = vigil("hub", "check-config", "--config", str(config))
    assert result.returncode == 2 and f"{config}: {key}:" in result.stderr, result.stderr
    good = tmp_path / "dsn"
    good.write_text("host=192.0.2.1 port=1 dbname=x password=s3cret\n")  # never dialled
    config.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n[store]\nbackend = "postgres"\n'
                      f'dsn_file = "{good}"\n')  # fmt: skip
    result = vigil("hub", "check-config", "--config", str(config), timeout=20)
    assert result.returncode == 0 and "s3cret" not in result.stdout + result.stderr
