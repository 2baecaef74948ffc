"""The state directory: created private, and locked so that two agents
never share one buffer (the second refuses to start and says who holds it).

The lock is an flock(2) on `agent.lock`, released by the kernel when the
process dies, even by kill -9, so a crash never leaves a stale lock."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import structlog

log = structlog.get_logger()


class StateDirError(Exception):
    pass


def prepare(path: Path) -> None:
    """Create `path` (mode 0750) or tighten an existing one that others can write to."""
    try:
        path.mkdir(mode=0o750, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o022:
            os.chmod(path, mode & ~0o022)
            log.warning("state_dir_permissions_tightened", path=str(path), was=oct(mode))
    except OSError as exc:
        raise StateDirError(f"cannot create state directory {path}: {exc.strerror}") from exc


class StateLock:
    def __init__(self, path: Path) -> None:
        self.path = path / "agent.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirError(
                f"another vigil agent (pid {holder}) is using the state directory "
                f"{self.path.parent}; stop it first or give this one another [agent] state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
