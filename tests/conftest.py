"""Shared test helpers.

Every test runs under blockbuster: a blocking call (file or socket I/O,
time.sleep) made by vigil's code on a running event loop fails the test,
as aiohttp's own suite does. Waiting is always for a condition with a
deadline, never a bare sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from blockbuster import blockbuster_ctx

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
        yield


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
