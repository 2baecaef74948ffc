"""Files replaced whole or not at all, for every piece of state the agent
keeps: write a temporary file, fsync it, rename it over the target, fsync
the directory so the rename itself survives a power loss."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from pathlib import Path

Snapshot = tuple[Path, bytes]
"""A file's new content, taken on the event loop where the state changes."""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o640, sync_dir: bool = True) -> None:
    """Replace `path` with `data`. On an error (a full disk) the old file
    stays and the temporary one is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:  # a write can be cut short
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


async def write_snapshot(executor: Executor | None, snapshot: Snapshot | None) -> None:
    """Write a snapshot (if any) atomically in a worker thread: the loop
    took it, so the state cannot change under the write."""
    if snapshot is not None:
        await asyncio.get_running_loop().run_in_executor(executor, write_atomically, *snapshot)


def set_aside(path: Path) -> Path:
    """Move a damaged file out of the way as NAME.corrupt, for a person to
    look at; the agent then starts without it. Returns the new path."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target
