"""One GET, again and again, on a kept connection: what a scrape does.

A scrape asks the same URL every interval. agent/core/h1.py (h11 over
asyncio streams) spent about 1.1 ms of CPU on each GET of node_exporter
on loopback, most of it in the streams' and h11's Python; the same
exchange parsed by httptools (llhttp, in C) from an asyncio Protocol
costs about 0.4 ms (bench/scrape.py measures the scrape in the agent).

Scope, kept small on purpose: GET of one URL with fixed headers, on one
connection kept alive between requests. Anything else is the caller's
to do with h1.fetch: `get` returns a redirect's status and Location as
it came (the scrape then follows it with h1.fetch, redirects are rare).
What the server says is checked as h1 checks it: the body is capped at
h1.MAX_BODY, gzip/deflate undone (h1._decoded), a malformed answer is an
HttpError, a close before a whole answer Disconnected. Any error, and a
cancellation (the caller's timeout), closes the connection, so half an
answer is never taken for the next; so do bytes that come with no request
waiting. A request on a kept connection the server closed while idle is
made once more on a new one (a GET may be made twice).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

import httptools

from agent.core import h1
from agent.core.http import USER_AGENT, tls_context


class _Answer(asyncio.Protocol):
    """One connection: httptools fed as data arrives; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.got_headers = False
        self.complete = False
        self.started = False  # any byte of this answer came
        self.extra = False  # bytes past the answer: no telling whose they are
        self.keep_alive = False  # what the complete answer said
        self.error: h1.HttpError | None = None  # what a callback found wrong

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self._fail(h1.HttpError("bytes from the server with no request waiting"))
            return
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(h1.HttpError("the server switched protocols"))
        except httptools.HttpParserError as err:  # a callback's too: the body cap
            self._fail(self.error or h1.HttpError(f"invalid HTTP answer: {err}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        framed = any(k in ("content-length", "transfer-encoding") for k, _ in self.headers)
        if self.got_headers and not framed:  # the body ends with the connection (HTTP/1.0)
            self.complete = True
            self.waiter.set_result(None)
        else:
            self.waiter.set_exception(
                h1.Disconnected("server closed the connection without a complete answer")
            )

    # -- httptools callbacks (past a complete answer, another message began:
    # nothing of it is taken, and the connection is not used again)
    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if not self.complete:
            self.status = self.parser.get_status_code()
            self.got_headers = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.size += len(body)
        if self.size > h1.MAX_BODY:
            self.error = h1.HttpError(f"answer body over {h1.MAX_BODY // 2**20} MiB")
            raise self.error  # httptools stops, and raises its own error
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200:  # 100 Continue, 103: the answer follows
            self._reset()
            self.started = True
            return
        self.complete = True
        # asked here: once the callback returns, the parser is reset for the next
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # --
    def _fail(self, err: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(err)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self.transport is not None and self.waiter is None
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            await self.waiter
        except BaseException:  # an error, or the caller's timeout: never reused
            self.close()
            raise
        finally:
            self.waiter = None
        if self.extra or not self.keep_alive:
            self.close()
        return self.status, self.headers, b"".join(self.body)


class KeptGet:
    """GET `url` with `headers`, on the connection the last GET left open."""

    def __init__(
        self, url: str, headers: dict[str, str], tls: ssl.SSLContext | None = None
    ) -> None:
        self.url = url
        self.scheme, self.host, self.port = h1.origin(url)
        self.tls = tls
        fields = {
            "Host": h1._host_header(self.scheme, self.host, self.port),
            "User-Agent": USER_AGENT,
            # loopback is the common case: inflating costs more CPU than the bytes
            "Accept-Encoding": "identity",
            **headers,
        }
        lines = [f"GET {h1.target(url)} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
        if any(c in line for line in lines for c in "\r\n\0"):
            raise ValueError(f"cannot send this request: a line break in {fields!r}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        self.conn: _Answer | None = None

    async def _connect(self) -> _Answer:
        ctx = None
        if self.scheme == "https":
            ctx = self.tls if self.tls is not None else tls_context()
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            _Answer, self.host, self.port, ssl=ctx, server_hostname=self.host if ctx else None
        )
        return protocol

    async def get(self) -> h1.Response:
        """The answer, its body decoded; a redirect as it came (Location in
        its headers). OSError when no connection can be made, HttpError when
        the answer is wrong."""
        conn, self.conn = self.conn, None
        answer = None
        if conn is not None and not conn.closed:
            try:
                answer = await conn.exchange(self.request)
            except h1.Disconnected:
                if conn.started:
                    raise  # it had begun to answer: not a close while idle
                answer = None  # closed while idle: once more, on a new one
        if answer is None:
            conn = await self._connect()
            answer = await conn.exchange(self.request)
        assert conn is not None
        if not conn.closed:
            self.conn = conn
        status, headers, body = answer
        return h1.Response(status, headers, h1._decoded(headers, body), self.url)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
