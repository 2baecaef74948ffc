"""Shared test helpers.

Every test runs under blockbuster: a blocking call (file or socket I/O,
time.sleep) made by vigil's code on a running event loop fails the test,
as aiohttp's own suite does. Waiting is always for a condition with a
deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from blockbuster import blockbuster_ctx

from tests.pgserver import pg_server  # noqa: F401 - a real PostgreSQL, for any test

T = TypeVar("T")


@pytest.fixture(autouse=True)
def no_blocking_on_the_loop() -> Iterator[None]:
    with blockbuster_ctx(["agent", "collectors", "hub"]) as bb:
        # Log lines go to stdout: a pipe to journald, written whole and never
        # waited on in practice; the one write we accept on the loop.
        for func in ("io.TextIOWrapper.write", "io.BufferedWriter.write"):
            bb.functions[func].can_block_in("structlog/_output.py", {"msg", "_write"})
        # procfs and sysfs files are made by the kernel from memory and never
        # wait on storage; the procfs collectors read them on the loop by design
        # (docs/operations.md), through this one function.
        bb.functions["os.read"].can_block_in("collectors/source.py", {"read"})
        bb.functions["os.readlink"].can_block_in(
            "collectors/source.py", {"interface_kind_from_sysfs"}
        )
        bb.functions["os.listdir"].can_block_in("collectors/procfs.py", {"process_count"})
        # statvfs of a file system the kernel answers from memory (ext4, xfs,
        # tmpfs...): the disk collector asks those on the loop, and sends its
        # runs to a thread when one may wait (collectors/disk.py MEMORY_FSTYPES)
        bb.functions["os.statvfs"].can_block_in("collectors/source.py", {"statvfs_usage"})
        yield


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path`: a real file system that really
    fills up. Needs root (CI runs as root); skips the test otherwise."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def wait_for(condition: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)
