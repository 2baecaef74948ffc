"""The read API: `GET /v1/hosts`, `/v1/metrics`, `/v1/events` (JSON).

Guarded by the read token when one is configured. Queries run in the store
thread, one at a time with ingest: SQLite's one writer and its readers
share a connection there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from agent.core.worker import Worker
from hub.auth import read_allowed
from hub.store import Store


class Read:
    def __init__(self, read_token: str | None, store: Store, store_thread: Worker) -> None:
        self.read_token = read_token
        self.store = store
        self.store_thread = store_thread

    async def _answer(self, request: web.Request, query: Callable[[], Any]) -> web.Response:
        if not read_allowed(request.headers.get("Authorization", ""), self.read_token):
            return _error(401, "the read API needs the read token")
        return web.json_response(await self.store_thread.run(query))

    async def hosts(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda: {"hosts": self.store.hosts()})

    async def metrics(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since, until = float(q.get("since", 0)), float(q.get("until", 1e12))
            limit = int(q.get("limit", 100_000))
        except ValueError:
            return _error(400, "since, until and limit must be numbers")
        return await self._answer(
            request,
            lambda: {
                "series": self.store.metrics(q.get("host"), q.get("name"), since, until, limit)
            },
        )

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since, limit = float(q.get("since", 0)), int(q.get("limit", 1000))
        except ValueError:
            return _error(400, "since and limit must be numbers")
        return await self._answer(
            request,
            lambda: {"events": self.store.events(q.get("host"), q.get("kind"), since, limit)},
        )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
