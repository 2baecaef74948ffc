"""The store `[store]` names: SQLite at DATA_DIR/hub.db (the default), or
PostgreSQL (hub/store/postgres.py, imported only then: a SQLite hub never
loads psycopg)."""

from __future__ import annotations

from hub import datadir
from hub.config import HubConfig
from hub.store import Store


def open_configured(config: HubConfig, set_aside_damaged: bool = True) -> Store:
    """The hub's store, migrated to the current schema. OSError (naming
    the file or the server, never a password) when it cannot be opened.
    `set_aside_damaged=False` (the commands beside a running hub): a
    damaged SQLite file is left where it is; only the hub replaces it."""
    section = config.store
    if section.backend == "postgres":
        try:
            from hub.store.postgres import PostgresStore, read_dsn
        except ImportError as exc:  # the optional dependency
            raise OSError(
                'store.backend = "postgres" needs psycopg:'
                f' pip install "vigil-monitoring[postgres]" ({exc})'
            ) from exc
        try:
            dsn = read_dsn(section.dsn, section.dsn_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise OSError(f"store.dsn_file: cannot read {section.dsn_file}: {exc}") from exc
        return PostgresStore(dsn, section.pool_size, section.connect_timeout)
    from hub.store.sqlite import SQLiteStore, open_store

    path = config.hub.data_dir / "hub.db"
    datadir.private_database(path)
    store = open_store(path) if set_aside_damaged else SQLiteStore(path)
    datadir.private_database(path)
    return store
