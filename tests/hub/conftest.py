"""The store backends every store test runs against, and their fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.store import Limits, Reader, Store
from hub.store.sqlite import SQLiteStore

BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp: SQLiteStore(tmp / "hub.db"),
}
# The suite's records are from 2026: keep them whatever today's date.
KEEP = Limits(retention=0.0)


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = BACKENDS[request.param](tmp_path)
    s.limits = KEEP
    yield s
    s.close()


@pytest.fixture
def reader(store: Store) -> Iterator[Reader]:
    """The store's queries, on a connection of their own, as the hub reads."""
    r = store.reader()
    yield r
    r.close()
