"""`POST /v1/ingest`: a batch from an agent, stored exactly once.

Order: check the token (before reading the body: a stranger costs no
bandwidth), read at most `max_body` bytes, decompress with a limit and
validate (in a worker thread: CPU work off the loop), store durably (in the
one store thread), and only then answer 200 with the stream's mark, the
`last_seq` the agent may forget up to. Any failure before the commit
answers without a 2xx, so the agent keeps the batch and sends it again.

Answers: 200 {"last_seq", "stored"}; 400 malformed (never retried by the
agent); 401 no or forged token; 403 a genuine token for another host;
413 over max_body, compressed or once decompressed; 415 unknown encoding;
422 over the host's series limits (the agent dead-letters it); 503 with
Retry-After when the store cannot write (a full disk: the agent keeps the
batch and comes back; logged once per distinct error).

What the validator (agent/core/protocol.py) accepts, the store stores: a
batch is refused up front (400) or stored, never failed in the store.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

import structlog
from aiohttp import web

from agent.core import protocol
from agent.core.worker import Worker
from hub.auth import bearer_host
from hub.store import SeriesLimit, Store, Unwritable

log = structlog.get_logger()

STORE_RETRY = 5  # seconds an agent waits after a 503 for a store that cannot write


class Ingest:
    def __init__(
        self,
        secret: bytes,
        store: Store,
        store_thread: Worker,
        decode_threads: Executor,
        max_body: int,
        max_decompressed: int,
    ) -> None:
        self.secret = secret
        self.store = store
        self.store_thread = store_thread
        self.decode_threads = decode_threads
        self.max_body = max_body
        self.max_decompressed = max_decompressed
        self.store_error: str | None = None  # the write error logged last
        self.unwritable_total = 0  # batches answered 503: the store could not write

    async def handle(self, request: web.Request) -> web.Response:
        host = bearer_host(request.headers.get("Authorization", ""), self.secret)
        if host is None:
            return _error(401, "missing or invalid bearer token")
        too_large = f"body over {self.max_body} bytes"
        if (request.content_length or 0) > self.max_body:
            return _error(413, too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, too_large)
        loop = asyncio.get_running_loop()
        encoding = request.headers.get("Content-Encoding", "identity")
        try:
            batch = await loop.run_in_executor(self.decode_threads, self._decode, body, encoding)
        except protocol.TooLarge as exc:
            return _error(413, str(exc))
        except protocol.UnsupportedEncoding as exc:
            return _error(415, str(exc))
        except protocol.ProtocolError as exc:
            return _error(400, str(exc))
        if batch.host != host:
            log.warning("ingest_wrong_host", token_host=host, batch_host=batch.host)
            return _error(403, f"this token is for host {host!r}, not {batch.host!r}")
        received = time.time()
        try:
            done = await self.store_thread.run(self.store.ingest, batch, received)
        except SeriesLimit as exc:
            log.warning("ingest_series_limit", host=host, reason=str(exc))
            await self.store_thread.run(self.store.note_refused, host)
            return _error(422, str(exc))
        except Unwritable as exc:
            self.unwritable_total += 1
            if str(exc) != self.store_error:
                log.error("store_write_failed", error=str(exc), host=host)
                self.store_error = str(exc)
            return _error(503, f"the hub cannot store now: {exc}", retry_after=STORE_RETRY)
        if self.store_error is not None:
            log.info("store_writable_again", refused=self.unwritable_total)
            self.store_error = None
        return web.json_response({"last_seq": done.last_seq, "stored": done.stored})

    def _decode(self, body: bytes, encoding: str) -> protocol.Batch:
        data = protocol.decompress(body, encoding, self.max_decompressed)
        return protocol.decode_batch(data)


def _error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": message}, status=status, headers=headers)
