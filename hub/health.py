"""`GET /healthz`: whether the store can write.

200 `{"status": "ok"}` when the latest write transaction committed, 503
`{"status": "store_unwritable", "error": ...}` when it failed (a full disk,
a read-only or damaged file). The latest write is an ingest when agents are
sending; when there was none in the last `FRESH` seconds, /healthz makes a
tiny one itself (`Store.probe`, in the store thread, after the ingests
queued before it). So /healthz costs the disk at most one small commit
every `FRESH` seconds, however often it is asked, and a failing ingest
shows at once.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from agent.core.worker import Worker
from hub.store import Store, WriteOutcome

FRESH = 5.0  # seconds an outcome stands for the store's health


class Health:
    def __init__(self, store: Store, store_thread: Worker) -> None:
        self.store = store
        self.store_thread = store_thread
        self.lock = asyncio.Lock()

    async def handle(self, request: web.Request) -> web.Response:
        outcome = self.store.last_write
        if _stale(outcome):
            async with self.lock:  # one probe at a time; the others use its outcome
                outcome = self.store.last_write
                if _stale(outcome):
                    outcome = await self.store_thread.run(self.store.probe)
        assert outcome is not None
        if outcome.error is None:
            return web.json_response({"status": "ok"})
        return web.json_response(
            {"status": "store_unwritable", "error": outcome.error},
            status=503,
            headers={"Retry-After": str(int(FRESH))},
        )


def _stale(outcome: WriteOutcome | None) -> bool:
    return outcome is None or time.monotonic() - outcome.at > FRESH
