"""The read API: `GET /v1/hosts`, `/v1/metrics`, `/v1/events` (JSON).

Guarded by the read token when one is configured. Queries run in their own
threads (`[hub] read_threads`), each with its own connection to the store
(`Store.reader()`): in WAL mode a read sees the last commit and never makes
ingest wait, however long it takes. Answers are pages: `limit` is an
integer from 1 to `max_read_points` (metrics) or `max_read_events`
(events), 400 beyond; `next` in the answer is the cursor for the following
page (`cursor=...` with the same filters), null on the last page.
`/v1/metrics?step=5m` (any multiple of 5 minutes) reads the rollups
instead of raw points: one point per bucket, `agg` (avg, min, max, last,
count; default avg) of the points in it. The JSON
is built in the read thread too, so a page costs the event loop nothing
but the send.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from agent.core.exposition import CONTENT_TYPE
from agent.core.schema import Invalid, parse_duration
from hub.auth import may_read
from hub.fleet import Figures, alerts_answer, metrics_text
from hub.store import AGGREGATES, STEP, BadCursor, Reader

MAX_CURSOR = 1000  # characters; ours are far shorter


T = TypeVar("T")


class BadQuery(ValueError):
    """A query parameter out of its range; the message says which and why."""


class Read:
    def __init__(
        self,
        read_token: str | None,
        open_reader: Callable[[], Reader],
        threads: int,
        max_points: int,
        max_events: int,
        status: Callable[[Mapping[str, Any]], str] = lambda host: "up",
        own: Figures = dict,
    ) -> None:
        self.status = status  # a host's up, late, silent or retired (hub/liveness.py)
        self.own = own  # the hub's own figures for /metrics
        self.read_token = read_token
        self.open_reader = open_reader
        self.max_points = max_points
        self.max_events = max_events
        self.local = threading.local()
        self.readers: list[Reader] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read")

    def close(self) -> None:
        """Wait for the reads in hand, then close every reader (blocks: off the loop)."""
        self.pool.shutdown(wait=True)
        with self.lock:
            for reader in self.readers:
                reader.close()
            self.readers.clear()

    def _reader(self) -> Reader:
        """This read thread's reader, opened on its first query."""
        reader: Reader | None = getattr(self.local, "reader", None)
        if reader is None:
            reader = self.local.reader = self.open_reader()
            with self.lock:
                self.readers.append(reader)
        return reader

    async def _answer(
        self, request: web.Request, query: Callable[[Reader], dict[str, Any]]
    ) -> web.Response:
        if not may_read(request, self.read_token):
            return _refused(self.read_token, "the read API")
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(self.pool, self._run, query)
        except BadCursor as exc:
            return _error(400, f"cursor: {exc}")
        return web.Response(body=body, content_type="application/json")

    async def query(self, query: Callable[[Reader], T]) -> T:
        """`query` on one of the read threads' readers (the hub's own reads)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: query(self._reader()))

    def _run(self, query: Callable[[Reader], dict[str, Any]]) -> bytes:
        return json.dumps(query(self._reader())).encode()

    async def hosts(self, request: web.Request) -> web.Response:
        def query(r: Reader) -> dict[str, Any]:
            return {"hosts": [{**h, "status": self.status(h)} for h in r.hosts()]}

        return await self._answer(request, query)

    async def alerts(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since = _number(q, "since", 0.0)
            limit = _limit(q, self.max_events, "events")
        except BadQuery as exc:
            return _error(400, str(exc))
        state = q.get("state")
        if state not in (None, "pending", "firing", "resolved"):
            return _error(400, "state must be pending, firing or resolved")
        return await self._answer(request, lambda r: alerts_answer(r, state, since, limit))

    async def prometheus(self, request: web.Request) -> web.Response:
        """GET /metrics: the fleet's latest values (hub/fleet.py)."""
        if not may_read(request, self.read_token):
            return _refused(self.read_token, "/metrics")
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(
            self.pool, lambda: metrics_text(self._reader(), self.status, self.own)
        )
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def metrics(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since, until = _number(q, "since", 0.0), _number(q, "until", 1e12)
            limit = _limit(q, self.max_points, "points")
            after = _cursor(q)
            step, agg = _step(q)
        except BadQuery as exc:
            return _error(400, str(exc))

        def query(r: Reader) -> dict[str, Any]:
            page = r.metrics(q.get("host"), q.get("name"), since, until, limit, after, step, agg)
            return {"series": page.items, "next": page.next}

        return await self._answer(request, query)

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since = _number(q, "since", 0.0)
            limit = _limit(q, self.max_events, "events")
            after = _cursor(q)
        except BadQuery as exc:
            return _error(400, str(exc))

        def query(r: Reader) -> dict[str, Any]:
            page = r.events(q.get("host"), q.get("kind"), since, limit, after)
            return {"events": page.items, "next": page.next}

        return await self._answer(request, query)


def _number(q: Mapping[str, str], key: str, default: float) -> float:
    text = q.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadQuery(f"{key} must be a finite number (Unix seconds), not {text[:40]!r}")
    return value


def _limit(q: Mapping[str, str], maximum: int, unit: str) -> int:
    text = q.get("limit")
    if text is None:
        return maximum
    limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None
    if limit is None and text.isascii() and text.isdigit():
        limit = maximum + 1  # too many digits to be anything but over the maximum
    if limit is None or limit < 1:
        raise BadQuery(f"limit must be an integer from 1 to {maximum}, not {text[:40]!r}")
    if limit > maximum:
        raise BadQuery(
            f"limit is over the maximum of {maximum} {unit} per page;"
            " read the rest page by page with the cursor in `next`"
        )
    return limit


def _step(q: Mapping[str, str]) -> tuple[float | None, str]:
    """`step` (None: raw points) and `agg`."""
    text, agg = q.get("step", "raw"), q.get("agg", "avg")
    if agg not in AGGREGATES:
        raise BadQuery(f"agg must be one of {', '.join(AGGREGATES)}, not {agg[:40]!r}")
    if text == "raw":
        if "agg" in q:
            raise BadQuery("agg needs a step (step=5m or a multiple of it)")
        return None, agg
    try:
        step = parse_duration(text[:40])
    except Invalid:
        step = 0.0
    if step <= 0 or not (step / STEP).is_integer() or step > 3650 * 86400:
        raise BadQuery(
            f"step must be raw or a multiple of 5m (5m, 1h, 1d, up to 3650d), not {text[:40]!r}"
        )
    return step, agg


def _cursor(q: Mapping[str, str]) -> str | None:
    text = q.get("cursor")
    if text is not None and (not text or len(text) > MAX_CURSOR):
        raise BadQuery("cursor: not a cursor of this hub")
    return text


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refused(read_token: str | None, what: str) -> web.Response:
    if read_token is None:
        return _error(403, f"{what} without a read token answers local requests only (docs/hub.md)")
    return _error(401, f"{what} needs the read token")
