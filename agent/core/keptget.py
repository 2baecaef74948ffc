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
What the server says is checked as h1 checks it: the headers are capped
at MAX_HEAD and the body at h1.MAX_BODY, gzip/deflate undone
(h1._decoded), a chunked body's trailers ignored, a malformed answer is
an HttpError (lines ending in a bare LF are read, as h11 read them; two
Content-Lengths, or one beside Transfer-Encoding, or a folded header are
refused, as llhttp refuses them), a close or reset before a whole answer
Disconnected. No compression is asked of a loopback target. Any error, and a
cancellation (the caller's timeout), closes the connection, so half an
answer is never taken for the next; so do bytes that come with no request
waiting. A request on a kept connection the server closed while idle is
made once more on a new one (a GET may be made twice).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from typing import cast

import httptools

from agent.core import h1
from agent.core.http import USER_AGENT, tls_context

MAX_HEAD = 64 * 1024  # an answer's status line and headers


class _Answer(asyncio.Protocol):
    """One connection: httptools fed as data arrives; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # bare LF line ends (an exporter written with printf), as h11 read them
        self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
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
        self.head_bytes = 0  # bytes received before the headers were complete
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
        if not self.got_headers:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(h1.HttpError("the server switched protocols"))
        except httptools.HttpParserError as err:  # a callback's too: the body cap
            self._fail(self.error or h1.HttpError(f"invalid HTTP answer: {err}"))
            return
        if not self.got_headers and self.head_bytes > MAX_HEAD:
            # httptools bounds no header block (h11 stopped at 16 KiB)
            self._fail(h1.HttpError(f"answer headers over {MAX_HEAD // 1024} KiB"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        framed = any(k in ("content-length", "transfer-encoding") for k, _ in self.headers)
        if self.got_headers and not framed and exc is None:
            # the body ends with the connection (HTTP/1.0); a reset cuts it
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
        if not self.complete and not self.got_headers:  # not a chunked body's trailers
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
        self.body = []  # not held until a full collection breaks the parser's cycle
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
        body, self.body = b"".join(self.body), []  # not held until the next scrape
        if self.extra or not self.keep_alive:
            self.close()
        return self.status, self.headers, body


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
            # on loopback, inflating costs more CPU than the bytes; elsewhere not
            "Accept-Encoding": "identity" if _loopback(self.host) else "gzip",
            **headers,
        }
        lines = [f"GET {h1.target(url)} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
        if any(c in line for line in lines for c in "\r\n\0"):
            raise ValueError(f"cannot send this request: a line break in {fields!r}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        self.conn: _Answer | None = None
        self.closing = False  # close() came while a GET was in flight

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
        if self.closing:
            conn.close()
        elif not conn.closed:
            self.conn = conn
        status, headers, body = answer
        return h1.Response(status, headers, h1._decoded(headers, body), self.url)

    def close(self) -> None:
        self.closing = True
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
