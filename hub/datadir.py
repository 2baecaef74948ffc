"""The hub's data directory and database are private: the database holds
the fleet's log lines and events, the directory the token secret.

`prepare(data_dir)` runs before anything is written there (`vigil hub run`
and `vigil hub token`): it creates the directory with mode 0750, or takes
group write and every right of others from an existing one (logged as
`data_dir_permissions_tightened`). `private_database(path)` makes the
database file 0600 before it is opened, and it and its `-wal` and `-shm`
0600 once they are open (SQLite gives the -wal and -shm it creates later
the mode of the database file).
Under systemd, `StateDirectoryMode=0750` and `UMask=0077` do the same; this
does it when the hub is started by hand, in a container, or by another
init system.

`problem(data_dir, sqlite)` says, without creating or changing anything,
why `prepare` and the store could not use the directory: `vigil hub
check-config` and `vigil hub run` both ask it before starting
(hub/reload.py, `load_for_run`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from agent.core import statedir

log = structlog.get_logger()

DIR_MODE = 0o750
FILE_MODE = 0o600
DB_PARTS = ("", "-wal", "-shm")


def prepare(data_dir: Path) -> None:
    """Create `data_dir` 0750, or tighten one that group may write or others
    may enter. OSError (with the path) when that cannot be done."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o027:
        os.chmod(data_dir, mode & ~0o027)
        log.warning("data_dir_permissions_tightened", path=str(data_dir), was=oct(mode))


def problem(data_dir: Path, sqlite: bool = True) -> str | None:
    """Why `vigil hub run` could not create or use `data_dir`, or None
    (creates nothing). `sqlite`: the store is DATA_DIR/hub.db."""
    files = tuple(f"hub.db{suffix}" for suffix in DB_PARTS) if sqlite else ()
    return statedir.problem(data_dir, "data", files, private=0o027)


def private_database(path: Path) -> None:
    """The database at `path` and its -wal and -shm: 0600 (readable by the
    hub's user alone). A missing database is created empty with that mode,
    so SQLite never makes it with the umask's: call before opening it, and
    again after (a damaged file set aside is replaced by a new one)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
    for suffix in DB_PARTS:
        part = Path(f"{path}{suffix}")
        try:
            mode = stat.S_IMODE(part.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(part, mode & ~0o077)
