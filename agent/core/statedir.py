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


def problem(
    path: Path,
    what: str,
    files: tuple[str, ...] = (),
    dirs: tuple[str, ...] = (),
    private: int = 0o022,
) -> str | None:
    """Why a daemon could not create or use its `what` directory `path`
    ("state", "data") with the `files` and `dirs` it keeps there, or None.
    Asked of the file system, not tried: check-config creates nothing.
    `private`: the mode bits the daemon takes away from an existing one
    (only its owner, or root, can)."""
    try:
        for existing in (path, *path.parents):
            if existing.exists():
                break
            if existing.is_symlink():  # mkdir cannot make what it points to
                return f"{existing} is a symbolic link to nothing"
        else:
            existing = Path("/")
        if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
            if existing == path:
                return f"{path} is not a writable directory"
            return f"cannot create {what} directory {path}: {existing} is not a writable directory"
        if existing != path:
            return None  # made at start, empty
        st = path.stat()
        mode = stat.S_IMODE(st.st_mode)
        if mode & private and st.st_uid != os.geteuid() and os.geteuid() != 0:
            return (
                f"{path} is open to others ({oct(mode)}) and owned by uid {st.st_uid}, so this"
                f" user cannot make it private: chmod {oct(mode & ~private)} it"
            )
        for name in (*files, *dirs):
            entry = path / name
            if not entry.exists():
                if entry.is_symlink():  # it would be followed and its target made
                    kind = _kind(name, dirs)
                    return f"{entry} is a symbolic link to nothing; vigil keeps a {kind} there"
                continue
            if name in dirs and not entry.is_dir():
                return f"{entry} is not a directory; vigil keeps a directory of that name"
            if name not in dirs and not entry.is_file():
                kind = "a directory" if entry.is_dir() else "not a regular file"
                return f"{entry} is {kind}; vigil keeps a file of that name"
            if not os.access(entry, os.W_OK | (os.X_OK if name in dirs else 0)):
                return f"{entry} is not writable"
    except OSError as exc:  # a parent this user may not enter
        return f"cannot use {what} directory {path}: {exc.strerror or exc}"
    return None


def _kind(name: str, dirs: tuple[str, ...]) -> str:
    return "directory" if name in dirs else "file"
