"""What one client may hold in the hub: a connection, time, a body in flight.

Why this module exists. aiohttp's server has no header-read timeout and no
connection cap, and its keep-alive timer (3630 s by default) is the only
clock on a connection. A thousand clients that connect and send their
headers a byte at a time (Slowloris) held every file descriptor the hub
had, and each authenticated but unfinished 8 MiB body cost about 15 MiB
(issue 13). The hub does not need a token to be hurt that way: this module
bounds what a stranger can hold before the app sees a request.

Connections (`Guard`). The hub listens with `loop.create_server(guard.
factory(runner.server), ...)` (hub/server.py): each aiohttp RequestHandler
is wrapped in a thin asyncio protocol, `_Conn`, that forwards every call to
it unchanged and keeps one clock per connection:

- waiting for headers: from the connect, or from the first byte of the next
  request on a kept-alive connection, the headers must be complete within
  `header_timeout`;
- idle: after a response, the next request must start within
  `idle_timeout`;
- in a request: no clock here. The app's middleware (`Guard.middleware`)
  stops the clock when a request reaches the app and starts the idle clock
  when the handler is done; the ingest handler bounds its body read with
  `body_timeout` (hub/ingest.py).

A connection whose clock runs out is closed. At `max_connections` a new
connection first displaces the one that has been waiting (in its headers,
or idle) longest, if it has waited over half of its timeout: a real client
sends its headers in one packet, and an idle agent just reconnects, so what
is displaced is a slow client, and a flood of them cannot lock the fleet
out. If none has, the newcomer is answered a minimal `503` with
`Retry-After`, without reading its request, and closed (the connections
already in a request are never touched). Those answers are kept open at
most a second (so the client reads the answer rather than a reset), and at
most `REFUSING_MAX` at a time. With TLS, a connection counts once its
handshake is done; the handshake is bounded by `header_timeout`
(`ssl_handshake_timeout`). The fds this needs: `max_connections +
FD_HEADROOM` (the unit's `LimitNOFILE=`; `raise_fd_limit` checks it).

Bodies in flight (`InFlight`). After the token and before the body, a
request takes a slot: at most `max_inflight_per_host` per host (429 beyond:
that host is sending too much at once) and `max_inflight_bodies` in all
(503 beyond: the hub is busy), answered at once with `Retry-After`, never
queued. A slot is held until the answer, so the memory that bodies and their
decoding take is bounded by the count, whatever the clients do. When all
are taken, a newcomer displaces the body that has been arriving longest if
it has taken over `InFlight.DISPLACE_AFTER` (2 s): hosts that stall their
bodies cannot lock the fleet out for `body_timeout`.

Everything refused or closed is counted (`Guard.counts`) and logged as
`hub_clients_limited`, at most once every `LOG_EVERY` seconds: a flood
must not become a flood of log lines.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import cast

import structlog
from aiohttp import StreamReader, web

log = structlog.get_logger()

RETRY_AFTER = 1  # seconds: bodies and connections are short-lived
REFUSING_MAX = 64  # refused connections kept open to read their 503
REFUSE_LINGER = 1.0  # seconds
FD_HEADROOM = 256  # the store, the listener, refused connections, stdio
LOG_EVERY = 10.0
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Retry-After: %d\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 28\r\n"
    b"Connection: close\r\n\r\n"
    b"too many connections to hub\n" % RETRY_AFTER
)

_HEADERS, _IDLE, _REQUEST, _CLOSING = "headers", "idle", "request", "closing"


class Counts:
    """Counted always; logged at most once every LOG_EVERY seconds, with
    what happened since the last line and the totals."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -LOG_EVERY

    def add(self, what: str, n: int = 1) -> None:
        self.total[what] += n
        self._unlogged[what] += n
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning(
                "hub_clients_limited",
                since_last=dict(self._unlogged),
                total=dict(self.total),
            )
            self._unlogged.clear()


class Guard:
    def __init__(
        self,
        max_connections: int,
        header_timeout: float,
        idle_timeout: float,
        counts: Counts | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.counts = counts or Counts()
        self.live: dict[asyncio.BaseTransport, _Conn] = {}
        # connections waiting for headers or idle, oldest wait first
        self.waiting: OrderedDict[_Conn, None] = OrderedDict()
        self.refusing = 0

    def factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server, around aiohttp's."""

        def make() -> asyncio.Protocol:
            return _Conn(self, server)

        return make

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = self.live.get(request.transport) if request.transport else None
        if conn is not None:
            conn.enter(_REQUEST)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            if conn is not None and conn.transport is not None:
                # 408: the client stopped sending its body. aiohttp would wait
                # up to 10 s for the rest; a second to read the answer will do.
                conn.enter(_CLOSING if status == 408 else _IDLE)

    def admit(self, conn: _Conn) -> bool:
        """Room for `conn`? Displace a stale waiting connection if need be."""
        if len(self.live) < self.max_connections:
            return True
        now = asyncio.get_running_loop().time()
        for _, old in zip(range(8), self.waiting, strict=False):
            if now >= old.since + (old.deadline - old.since) / 2:
                self.counts.add("connections_displaced")
                old.close()
                return True
        return False


class _Conn(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a clock and a place in
    the count; or, when there is no room, a 503 and a close."""

    def __init__(self, guard: Guard, server: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.server = server
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.state = _HEADERS
        self.since = self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        self.transport = transport
        if not guard.admit(self):
            self._refuse(transport)
            return
        self.inner = self.server()
        guard.live[transport] = self
        self.enter(_HEADERS)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return  # refused: what it sends is dropped unread
        if self.state == _IDLE and data:
            self.enter(_HEADERS)  # the next request began: its headers are now due
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is None:
            self.close()
            return None
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        if self.inner is None:
            self.guard.refusing -= 1
        else:
            if self.transport is not None:
                self.guard.live.pop(self.transport, None)
            self.inner.connection_lost(exc)
        self.transport = None

    def enter(self, state: str) -> None:
        """Start the clock of `state` (none in a request)."""
        self._stop_clock()
        self.state = state
        if state == _REQUEST:
            return
        loop = asyncio.get_running_loop()
        timeout = {
            _HEADERS: self.guard.header_timeout,
            _IDLE: self.guard.idle_timeout,
            _CLOSING: REFUSE_LINGER,
        }[state]
        self.since = loop.time()
        self.guard.waiting[self] = None  # at the end: the newest wait
        self.deadline = self.since + timeout
        self.timer = loop.call_at(self.deadline, self._expired)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _stop_clock(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.guard.waiting.pop(self, None)

    def _expired(self) -> None:
        self.timer = None
        if self.state != _CLOSING:
            self.guard.counts.add("header_timeouts" if self.state == _HEADERS else "idle_closed")
        self.close()

    def _refuse(self, base: asyncio.BaseTransport) -> None:
        guard = self.guard
        guard.refusing += 1
        guard.counts.add("connections_refused")
        # a stream transport (uvloop's do not derive from asyncio's classes)
        transport = cast(asyncio.Transport, base)
        if guard.refusing > REFUSING_MAX:
            transport.close()
            return
        transport.write(_REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(REFUSE_LINGER, transport.close)


class Displaced(asyncio.TimeoutError):
    """Set on the body stream of a request whose slot was given to another.
    A TimeoutError, so that aiohttp's read of the rest of the body after the
    answer (its "lingering") ends quietly instead of logging a traceback."""


class Slot:
    def __init__(self, host: str, stream: StreamReader, started: float, size: int) -> None:
        self.host, self.stream, self.started, self.size = host, stream, started, size
        self.held = True


class InFlight:
    """Slots for request bodies: per host, in all, and by bytes declared
    (Content-Length; a chunked body counts as `max_body`). The byte budget
    is what bounds memory: an agent's batch is tens of kilobytes, so a
    fleet's bursts fit by the hundred, while bodies of several MiB fit by
    the few. When the hub is full, a newcomer displaces the body that has
    been arriving longest, if that has taken over `DISPLACE_AFTER` s (an
    agent's batch arrives in well under that): its request is answered 503
    with Retry-After, and a few hosts that stall their bodies cannot lock
    the others out."""

    DISPLACE_AFTER = 2.0

    def __init__(
        self, total: int, per_host: int, counts: Counts | None = None, max_bytes: int = 1 << 62
    ) -> None:
        self.total = total
        self.per_host = per_host
        self.max_bytes = max_bytes
        self.counts = counts or Counts()
        self.by_host: Counter[str] = Counter()
        self.held = 0
        self.bytes = 0
        self.reading: OrderedDict[Slot, None] = OrderedDict()  # oldest first

    def take(self, host: str, stream: StreamReader, size: int) -> Slot | web.Response:
        """A slot for a body of `size` bytes, its `stream` now reading (call
        `read` when the body is in, `give_back` at the end), or the answer
        to send instead: 429 for this host, 503 for the hub."""
        if self.by_host[host] >= self.per_host:
            self.counts.add("bodies_refused_host")
            return busy(429, f"host {host!r} already has {self.per_host} requests in flight")
        now = asyncio.get_running_loop().time()
        while self.held >= self.total or (self.held and self.bytes + size > self.max_bytes):
            oldest = next(iter(self.reading), None)
            if oldest is None or now - oldest.started < self.DISPLACE_AFTER:
                self.counts.add("bodies_refused_hub")
                return busy(503, "the hub has too many requests in flight")
            self.counts.add("bodies_displaced")
            self.give_back(oldest)
            oldest.stream.set_exception(Displaced())
        slot = Slot(host, stream, now, size)
        self.by_host[host] += 1
        self.held += 1
        self.bytes += size
        self.reading[slot] = None
        return slot

    def read(self, slot: Slot) -> None:
        """The body is in: it can no longer be displaced."""
        self.reading.pop(slot, None)

    def give_back(self, slot: Slot) -> None:
        if not slot.held:
            return
        slot.held = False
        self.reading.pop(slot, None)
        self.held -= 1
        self.bytes -= slot.size
        self.by_host[slot.host] -= 1
        if not self.by_host[slot.host]:
            del self.by_host[slot.host]


def busy(status: int, message: str) -> web.Response:
    """429 or 503 with Retry-After; the body was not read, so the connection
    cannot carry another request: closed (aiohttp drops what still comes,
    for up to 10 s, so the client reads this answer rather than a reset)."""
    response = web.json_response(
        {"error": message}, status=status, headers={"Retry-After": str(RETRY_AFTER)}
    )
    response.force_close()
    return response


def raise_fd_limit(max_connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE to what `max_connections` needs, up to
    the hard limit; log when that is not enough (the unit's LimitNOFILE)."""
    need = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass  # the unit's system call filter refuses setrlimit: LimitNOFILE decides
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning(
            "hub_fd_limit_low",
            open_files_limit=soft,
            needed=need,
            hint="raise LimitNOFILE (or ulimit -n), or lower [hub] max_connections",
        )
