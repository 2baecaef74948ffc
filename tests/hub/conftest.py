"""The store backends every store test runs against, and their fixtures:
SQLite in the test's directory, and PostgreSQL 15 (a real server the
session starts once, tests/pgserver.py; a fresh database per test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.store import Limits, Reader, Store
from hub.store.sqlite import SQLiteStore
from tests import pgserver


def _postgres(server: pgserver.PostgresServer) -> Store:
    from hub.store.postgres import PostgresStore

    return PostgresStore(server.database())


# Each backend: how to make a store, given the test's directory and (for
# postgres) the session's server.
BACKENDS: dict[str, Callable[[Path, pgserver.PostgresServer | None], Store]] = {
    "sqlite": lambda tmp, _: SQLiteStore(tmp / "hub.db"),
    "postgres": lambda _, server: _postgres(server) if server else pytest.fail("no server"),
}
# The suite's records are from 2026: keep them whatever today's date.
KEEP = Limits(retention=0.0)


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    server = request.getfixturevalue("pg_server") if request.param == "postgres" else None
    s = BACKENDS[request.param](tmp_path, server)
    s.limits = KEEP
    yield s
    s.close()


@pytest.fixture
def reader(store: Store) -> Iterator[Reader]:
    """The store's queries, on a connection of their own, as the hub reads."""
    r = store.reader()
    yield r
    r.close()
