"""`POST /v1/ingest`: a batch from an agent, stored exactly once.

Order: check the token (before reading the body: a stranger costs no
bandwidth), take a slot for a body in flight (hub/guard.py: 429 when this
host already has `max_inflight_per_host`, 503 when the hub has
`max_inflight_bodies`, both with Retry-After, never queued), read at most
`max_body` bytes within `body_timeout` into one buffer of the declared
size (a body costs its size once, not the twice of a growing buffer and
its copy), decompress with a limit and
validate (in a worker thread: CPU work off the loop), store durably (in the
one store thread), and only then answer 200 with the stream's mark, the
`last_seq` the agent may forget up to. Any failure before the commit
answers without a 2xx, so the agent keeps the batch and sends it again.

Answers: 200 {"last_seq", "stored"}; 400 malformed (never retried by the
agent); 401 no or forged token; 403 a genuine token for another host;
408 the body did not arrive within body_timeout (then the connection is
closed); 413 over max_body, compressed or once decompressed; 415 unknown
encoding; 422 over the host's series limits (the agent dead-letters it);
429, 503 busy (Retry-After); 503 also when the store cannot write (a full
disk: the agent keeps the batch and comes back; logged once per distinct
error).

What the validator (agent/core/protocol.py) accepts, the store stores: a
batch is refused up front (400) or stored, never failed in the store.

Every refusal is counted by reason in `Ingest.rejected` (a Counter over
`REASONS`, every reason present from the start, rendered by the hub's
/metrics as `vigil_hub_ingest_rejected_total{reason}`) and logged as
`ingest_rejected` with the reason, the status, the host the request claims
(the token's host id, genuine or not) and the answer, at most once per
reason every `LOG_EVERY` seconds (`suppressed`: how many of that reason
went unlogged before it). `Ingest.latency` (`Latency`) is the seconds from
a whole body in hand to its commit (decode, the wait for the store thread,
the write and its fsync), per accepted batch: the hub's own part of an
agent's delivery time.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from agent.core import protocol
from agent.core.worker import Worker
from hub.auth import Keys
from hub.guard import Displaced, InFlight, Slot, busy
from hub.store import Ingested, Prepared, SeriesLimit, Store, Unwritable

log = structlog.get_logger()

STORE_RETRY = 5  # seconds an agent waits after a 503 for a store that cannot write
LOG_EVERY = 10.0  # seconds: at most one `ingest_rejected` line per reason in this
REASONS = (
    "unauthorized",  # 401: no token, or not one this hub signed
    "revoked",  # 401: a token `vigil hub revoke` withdrew
    "forbidden",  # 403: a genuine token, another host's batch
    "malformed",  # 400: not a batch (or the body broke off)
    "too_large",  # 413: over max_body, compressed or decompressed
    "unsupported_encoding",  # 415
    "series_limit",  # 422: over the host's series limits
    "busy_host",  # 429: max_inflight_per_host
    "busy_hub",  # 503: max_inflight_bodies / max_inflight_bytes, or displaced
    "body_timeout",  # 408
    "store_unwritable",  # 503: the store cannot write (a full disk)
    "store_failed",  # 500: this batch failed in the store alone (logged: ingest_failed)
)


class Latency:
    """A histogram of seconds with fixed buckets: `counts[i]` batches took
    at most `BUCKETS[i]` (and more than the bucket before); `counts[-1]`
    took longer than the last. `cumulative()` gives Prometheus' `le` rows."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(le, batches that took at most le), the last le being infinity."""
        out, running = [], 0
        for le, n in zip((*self.BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            out.append((le, running))
        return out


class Committer:
    """Group commit: the batches that arrive while the store thread writes
    wait together and go to it as one group, in one transaction and one
    durable commit (`Store.ingest_many`); each batch's request is answered
    with its own outcome once that commit is done. With one fsync per batch
    a hub stored at most about 550 batches/s; now the commit's cost is
    shared by however many batches queued behind it, so it falls as the
    load rises, and a lone batch still commits at once (no timer: nothing
    waits for company)."""

    MOST = 256  # batches in one group: bounds one transaction's time

    def __init__(self, store: Store, store_thread: Worker) -> None:
        self.store = store
        self.store_thread = store_thread
        self.waiting: list[tuple[Prepared, asyncio.Future[Ingested]]] = []
        self.writing: asyncio.Task[None] | None = None
        self.groups = 0  # transactions; with `batches`, the mean group size
        self.batches = 0

    async def ingest(self, batch: Prepared) -> Ingested:
        """`store.ingest` of the prepared batch, in the next group."""
        done: asyncio.Future[Ingested] = asyncio.get_running_loop().create_future()
        self.waiting.append((batch, done))
        if self.writing is None:
            self.writing = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        """Groups, one after the other, while batches wait."""
        group: list[tuple[Prepared, asyncio.Future[Ingested]]] = []
        try:
            while self.waiting:
                group, self.waiting = self.waiting[: self.MOST], self.waiting[self.MOST :]
                self.groups += 1
                self.batches += len(group)
                try:
                    outcomes = await self.store_thread.run(
                        self.store.ingest_many, [b for b, _ in group]
                    )
                except Exception as exc:  # Unwritable, or a bug: every batch of it gets it
                    outcomes = [exc] * len(group)
                for (_, done), outcome in zip(group, outcomes, strict=True):
                    if done.done():  # its request was cancelled
                        continue
                    if isinstance(outcome, Exception):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        except asyncio.CancelledError:  # the hub stops: no answer is coming
            for _, done in group + self.waiting:
                done.cancel()
            self.waiting = []
            raise
        finally:
            self.writing = None


class Ingest:
    def __init__(
        self,
        keys: Keys,
        store: Store,
        store_thread: Worker,
        decode_threads: Executor,
        max_body: int,
        max_decompressed: int,
        inflight: InFlight,
        body_timeout: float,
    ) -> None:
        self.keys = keys
        # hosts whose token only the previous secret signs, and when they last
        # pushed: what a rotation still waits for (docs/hub.md)
        self.on_previous: dict[str, float] = {}
        self.store = store
        self.store_thread = store_thread
        self.committer = Committer(store, store_thread)
        self.decode_threads = decode_threads
        self.max_body = max_body
        self.max_decompressed = max_decompressed
        self.store_error: str | None = None  # the write error logged last
        self.unwritable_total = 0  # batches answered 503: the store could not write
        self.inflight = inflight
        # hosts whose token `vigil hub revoke` withdrew (hub/liveness.py keeps the set)
        self.revoked: Callable[[str], bool] = lambda host: False
        self.body_timeout = body_timeout
        self.rejected: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        self.latency = Latency()
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        host, previous = self.keys.host(authorization, time.time())
        if previous and host is not None:
            if host not in self.on_previous:
                log.info("previous_secret_used", host=host, until=self.keys.previous_until)
            self.on_previous[host] = time.time()
        elif self.on_previous and host is not None:
            self.on_previous.pop(host, None)  # it has its new token
        if host is None:
            response = _error(401, "missing or invalid bearer token")
            return self._reject("unauthorized", _claimed(authorization), response)
        if self.revoked(host):
            response = _error(401, f"the token of host {host!r} was revoked (vigil hub revoke)")
            return self._reject("revoked", host, response)
        if (request.content_length or 0) > self.max_body:
            return self._reject("too_large", host, _error(413, f"body over {self.max_body} bytes"))
        size = request.content_length
        slot = self.inflight.take(host, request.content, self.max_body if size is None else size)
        if isinstance(slot, web.Response):  # 429 or 503: busy
            return self._reject("busy_host" if slot.status == 429 else "busy_hub", host, slot)
        try:
            response = await self._ingest(request, host, slot)
        finally:
            self.inflight.give_back(slot)
        if response.status != 200:
            why = response.why if isinstance(response, Refusal) else None
            reason = why or _REASON_OF.get(response.status, "malformed")
            return self._reject(reason, host, response)
        return response

    def _reject(self, reason: str, host: str, response: web.Response) -> web.Response:
        """Count `response` (a refusal) under `reason`; log it unless this
        reason was logged within LOG_EVERY seconds."""
        self.rejected[reason] += 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_EVERY) < LOG_EVERY:
            self._unlogged[reason] += 1
            return response
        self._logged_at[reason] = now
        answer = response.text or ""
        log.warning(
            "ingest_rejected",
            reason=reason,
            status=response.status,
            host=host,
            answer=answer[:300],
            suppressed=self._unlogged.pop(reason, 0),
        )
        return response

    async def _ingest(self, request: web.Request, host: str, slot: Slot) -> web.Response:
        try:
            body = await asyncio.wait_for(read_body(request, self.max_body), self.body_timeout)
            self.inflight.read(slot)
        except Displaced:
            return busy(503, "the hub has too many requests in flight; this body was too slow")
        except asyncio.TimeoutError:
            self.inflight.counts.add("body_timeouts")
            response = _error(408, f"the body did not arrive within {self.body_timeout:g} s")
            response.force_close()
            return response
        except BodyTooLarge:
            return _error(413, f"body over {self.max_body} bytes")
        except (ConnectionError, RequestPayloadError) as exc:
            # the client went away or sent a broken chunked body: no one to answer
            response = _error(400, f"incomplete body ({type(exc).__name__}: {exc})"[:300])
            response.force_close()
            return response
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        encoding = request.headers.get("Content-Encoding", "identity")
        try:
            prepared = await loop.run_in_executor(self.decode_threads, self._decode, body, encoding)
        except protocol.TooLarge as exc:
            return _error(413, str(exc))
        except protocol.UnsupportedEncoding as exc:
            return _error(415, str(exc))
        except protocol.ProtocolError as exc:
            return _error(400, str(exc))
        finally:
            del body  # the batch is decoded: its bytes are not needed while it is stored
        if prepared.batch.host != host:
            return _error(403, f"this token is for host {host!r}, not {prepared.batch.host!r}")
        try:
            done = await self.committer.ingest(prepared)
        except SeriesLimit as exc:
            await self.store_thread.run(self.store.note_refused, host)
            return _error(422, str(exc))
        except Unwritable as exc:
            self.unwritable_total += 1
            if str(exc) != self.store_error:
                log.error("store_write_failed", error=str(exc), host=host)
                self.store_error = str(exc)
            # not busy: a 503 of another kind
            message = f"the hub cannot store now: {exc}"
            return _error(503, message, retry_after=STORE_RETRY, why="store_unwritable")
        except Exception as exc:  # the store logged it; the agent sends it again
            message = f"the hub could not store this batch: {exc!r}"[:300]
            return _error(500, message, why="store_failed")
        if self.store_error is not None:
            log.info("store_writable_again", refused=self.unwritable_total)
            self.store_error = None
        self.latency.observe(time.monotonic() - started)
        return web.json_response({"last_seq": done.last_seq, "stored": done.stored})

    def _decode(self, body: bytearray, encoding: str) -> Prepared:
        """The body as a batch, validated and worked out for the store (its
        rows, rollups and series: CPU work off the loop and the store thread)."""
        data = protocol.decompress(body, encoding, self.max_decompressed)
        return self.store.prepare(protocol.decode_batch(data), time.time())


class BodyTooLarge(Exception):
    pass


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The request body, at most `limit` bytes: into one buffer of the
    declared Content-Length, else (chunked) a buffer grown with a running
    limit. aiohttp's `request.read()` grows a buffer, raises its stream's
    buffer limit to `limit` and copies the result: about twice the body."""
    stream, length = request.content, request.content_length
    if length is None:
        grown = bytearray()
        try:
            while chunk := await stream.readany():
                grown += chunk
                if len(grown) > limit:
                    raise BodyTooLarge
        except BaseException:
            grown = bytearray()  # as below
            raise
        return grown
    if length > limit:
        raise BodyTooLarge
    buf, pos = bytearray(length), 0
    try:
        with memoryview(buf) as view:
            while pos < length:
                chunk = await stream.readany()
                if not chunk:
                    raise ConnectionResetError("the body ended before its Content-Length")
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
    except BaseException:
        # The exception's traceback keeps this frame alive until the garbage
        # collector breaks the cycle: not the body with it.
        buf = bytearray()
        raise
    return buf


_REASON_OF = {
    400: "malformed",
    403: "forbidden",
    408: "body_timeout",
    413: "too_large",
    415: "unsupported_encoding",
    422: "series_limit",
    429: "busy_host",
    503: "busy_hub",
}


def _claimed(authorization: str) -> str:
    """The host id a refused token claims (its part before the last dot),
    cut short and made printable: it is whatever a stranger sent."""
    token = authorization[7:] if authorization.startswith("Bearer ") else ""
    claimed = token.rpartition(".")[0] if "." in token else ""
    return claimed[:80].encode("ascii", "backslashreplace").decode() or "(none)"


class Refusal(web.Response):
    """An answer that says which of REASONS it counts under, where its
    status alone does not (503: busy or unwritable)."""

    why: str | None = None


def _error(
    status: int, message: str, retry_after: int | None = None, why: str | None = None
) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body = json.dumps({"error": message})
    answer = Refusal(text=body, status=status, headers=headers, content_type="application/json")
    answer.why = why
    return answer
