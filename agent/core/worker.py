"""One thread for one owner's blocking work, in order.

The shipper's buffer, the tailer's files, a notifier's queue directory and
the hub's database are each touched by one thread only, so their blocking
calls neither stall the event loop nor need locks: `await worker.run(f,
*args)` runs `f` there, after whatever was submitted before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Worker:
    def __init__(self, name: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    def submit(self, func: Callable[..., T], *args: Any) -> Future[T]:
        """Queue `func` without waiting for it (from any thread)."""
        return self.executor.submit(func, *args)

    def shutdown(self, wait: bool = True) -> None:
        """`wait`: until what was submitted is done (blocks: off the loop)."""
        self.executor.shutdown(wait=wait)
