"""A small HTTP/1.1 client on asyncio streams, for the two requests the
agent makes all the time: the shipper's POST to the hub and the http
check's probe. h11 does the protocol (status line, headers, content
length, chunked and close-delimited bodies, keep-alive); this module only
moves bytes.

Why not aiohttp, which the remote notifiers still use: it costs 14 MB of
resident memory once imported, and about three times the CPU per request
(bench/checks.py). Neither request needs its cookies, pools, proxies or
multipart forms. An agent that configures no remote notifier now never
imports it.

`Connection` is one connection to one origin, reusable while both sides
keep it alive (the shipper). `fetch` makes a request on a new connection
for every hop and follows redirects (the http check). A `Client` does the
same on the connection its last request left open, when that is to the
same origin and still good (a scrape's redirects: the scrape's own GET
is agent/core/keptget.py, cheaper still): it saves the connect and the
new connection's setup, about a third of a small GET's CPU on loopback.
None of them bounds time: callers wrap them in their timeout; a
timeout, like any error, closes the connection it hit, so an answer
read in part is never taken for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import h11

from agent.core.http import USER_AGENT, tls_context

MAX_BODY = 16 * 1024 * 1024  # an answer's body, decoded; more is an error, not a truncation
MAX_REDIRECTS = 10
_READ = 65536


class HttpError(Exception):
    """The exchange failed after connecting; the message says how."""


class Disconnected(HttpError):
    """The server closed the connection before a complete answer."""


class TooManyRedirects(HttpError):
    def __init__(self, url: str) -> None:
        super().__init__(f"too many redirects (more than {MAX_REDIRECTS}, last to {url})")
        self.url = url


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, in the order received
    body: bytes  # decoded from gzip or deflate when the server compressed it
    url: str  # after redirects
    peer_cert: bytes | None = None  # DER of the answering server's certificate (https)

    def header(self, name: str, default: str = "") -> str:
        return header(self.headers, name, default)

    @property
    def charset(self) -> str | None:
        for param in self.header("content-type").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return None


def header(headers: list[tuple[str, str]], name: str, default: str = "") -> str:
    """The first value of `name` in an answer's headers (names in lower case)."""
    name = name.lower()
    return next((value for key, value in headers if key == name), default)


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _host_header(scheme: str, host: str, port: int) -> str:
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if scheme == "https" else 80) else f"{name}:{port}"


def target(url: str) -> str:
    """The request target, with what may not go raw on the wire (spaces,
    non-ASCII) percent-encoded as a browser does; '%' escapes stay."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    return path + (f"?{quote(parts.query, safe='/%:@!$&()*+,;=?~')}" if parts.query else "")


class Connection:
    """One connection to one origin. `request` may be called again while
    `reusable`; any error leaves it closed."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        origin: tuple[str, str, int],
    ) -> None:
        self.reader, self.writer, self.origin = reader, writer, origin
        self.host = _host_header(*origin)
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        ssl_object = writer.get_extra_info("ssl_object")
        self.peer_cert = ssl_object.getpeercert(binary_form=True) if ssl_object else None

    @classmethod
    async def open(cls, url: str, tls: ssl.SSLContext | None = None) -> Connection:
        """Connect (and shake hands for https, with `tls` or the system's
        trust store). OSError when that fails: ssl errors, refusals, DNS
        (socket.gaierror)."""
        scheme, host, port = origin(url)
        ctx = None
        if scheme == "https":
            ctx = tls if tls is not None else tls_context()
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=host if ctx else None, limit=_READ
        )
        return cls(reader, writer, (scheme, host, port))

    @property
    def reusable(self) -> bool:
        """Whether a request may go on it: the last answer was read whole,
        neither side said close, and the server has not closed it since."""
        return (
            self.h11.our_state is h11.IDLE
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        close: bool = False,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request, read its whole answer: (status, headers, body)."""
        try:
            return await self._exchange(method, target, headers or {}, body, close)
        except BaseException:
            self.close()
            raise

    async def _exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        names = {k.lower() for k in headers}
        fields = [("Host", self.host)] if "host" not in names else []
        fields += list(headers.items())
        if "user-agent" not in names:
            fields.append(("User-Agent", USER_AGENT))
        if "accept-encoding" not in names:
            fields.append(("Accept-Encoding", "gzip, deflate"))
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            fields.append(("Content-Length", str(len(body))))
        if close:
            fields.append(("Connection", "close"))
        conn = self.h11
        try:
            # values as UTF-8, as aiohttp sent them (a token for the host id "häst")
            raw = [(k.encode("latin-1"), v.encode("utf-8")) for k, v in fields]
            out = conn.send(h11.Request(method=method, target=target, headers=raw))
            if body:
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except (h11.LocalProtocolError, UnicodeEncodeError) as err:
            raise ValueError(f"cannot send this request: {err}") from err
        self.writer.write(out)
        status, answer, chunks, size, events = 0, [], [], 0, 0
        while True:
            events += 1
            if events % 256 == 0:  # a body in tiny chunks must not hold the loop (and timeouts)
                await asyncio.sleep(0)
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as err:
                if self.reader.at_eof():
                    raise Disconnected(
                        "server closed the connection without a complete answer"
                    ) from err
                raise HttpError(f"invalid HTTP answer: {err}") from err
            if event is h11.NEED_DATA:
                try:
                    data = await self.reader.read(_READ)
                except ConnectionError as err:
                    raise Disconnected(
                        "server closed the connection without a complete answer"
                    ) from err
                conn.receive_data(data)
            elif isinstance(event, h11.Response) or (
                isinstance(event, h11.InformationalResponse) and event.status_code == 101
            ):  # 101 Switching Protocols is the answer to an Upgrade (PAUSED follows)
                status = event.status_code
                answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise HttpError(f"answer body over {MAX_BODY // 2**20} MiB")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                break  # PAUSED: the server switched protocols (101, CONNECT): no HTTP body
            elif isinstance(event, h11.ConnectionClosed):
                raise Disconnected("server closed the connection without a complete answer")
            # other informational answers (100 Continue, 103): the answer follows
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()  # keep-alive; otherwise not reusable
            if conn.trailing_data[0]:  # bytes past the answer: no telling whose they are
                self.close()
        else:
            self.close()
        return status, answer, _decoded(answer, b"".join(chunks))

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        """Close, waiting at most a second for a peer that ignores TLS close_notify."""
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with deadline(1.0):
                await self.writer.wait_closed()


def _decoded(headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The body as the server meant it: gzip and deflate undone (we ask
    for them), capped like the raw body. A gzip body may be several members."""
    coding = next((v.strip().lower() for k, v in headers if k == "content-encoding"), "")
    if not body or coding not in ("gzip", "x-gzip", "deflate"):
        return body
    tries = (31,) if coding != "deflate" else (15, -15)  # deflate: zlib-wrapped, or raw
    for wbits in tries:
        out, rest = b"", body
        try:
            while rest:
                inflate = zlib.decompressobj(wbits)
                out += inflate.decompress(rest, MAX_BODY + 1 - len(out))
                if len(out) > MAX_BODY:
                    raise HttpError(f"answer body over {MAX_BODY // 2**20} MiB")
                if not inflate.eof:
                    raise zlib.error("the compressed body is cut short")
                rest = inflate.unused_data if wbits == 31 else b""
        except zlib.error as err:
            if wbits == tries[-1]:
                raise HttpError(f"invalid {coding} body: {err}") from err
            continue
        return out
    return body


REDIRECTS = (301, 302, 303, 307, 308)
# what is for one origin only: not sent on to another (curl and browsers do the same)
_ORIGIN_BOUND = ("authorization", "proxy-authorization", "cookie", "host")


def redirected(
    url: str, status: int, location: str, method: str, headers: dict[str, str], body: bytes
) -> tuple[str, str, dict[str, str], bytes]:
    """The next hop of a redirect: (url, method, headers, body). 303, and
    301/302 after a POST, become a body-less GET (a HEAD stays a HEAD);
    credentials and a set Host stay with their origin. ValueError for a
    location that is not http(s)."""
    with contextlib.suppress(UnicodeError):  # raw UTF-8 in the header, as browsers read it
        location = location.encode("latin-1").decode("utf-8")
    nxt = urljoin(url, location)
    if origin(nxt) != origin(url):
        headers = {k: v for k, v in headers.items() if k.lower() not in _ORIGIN_BOUND}
    if method != "HEAD" and (status == 303 or (status in (301, 302) and method == "POST")):
        method, body = "GET", b""
        drop = ("content-type", "content-length")
        headers = {k: v for k, v in headers.items() if k.lower() not in drop}
    return nxt, method, headers, body


Hop = Callable[
    [str, str, dict[str, str], bytes],
    Awaitable[tuple[Connection, int, list[tuple[str, str]], bytes]],
]


async def fetch(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    tls: ssl.SSLContext | None = None,
    follow_redirects: bool = True,
) -> Response:
    """One request on a new connection per hop, redirects followed (see
    `redirected`). OSError when a hop's connection cannot be made or breaks
    (`err.vigil_url` names the hop, `err.vigil_connected` says whether the
    handshake had succeeded), HttpError when its answer is wrong."""

    async def hop(
        method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[Connection, int, list[tuple[str, str]], bytes]:
        conn = None
        try:
            conn = await Connection.open(url, tls)
            return conn, *await conn.request(method, target(url), headers, body, close=True)
        except OSError as err:
            err.vigil_url = url  # type: ignore[attr-defined]
            err.vigil_connected = conn is not None  # type: ignore[attr-defined]
            raise
        finally:
            if conn is not None:
                conn.close()  # not awaited: a peer slow to close costs no latency

    return await _follow(hop, method, url, dict(headers or {}), body, follow_redirects)


class Client:
    """`fetch` on the connection the last request left open, when it is to
    the same origin and still `reusable`; on a new one otherwise (the last
    is then closed). A kept connection that the server closed while it was
    idle fails at once (Disconnected, or a reset): the request is made once
    more, on a new connection, so a Client is for requests that may be
    made twice (a GET). Redirects are followed as `fetch` follows them.
    `close()` when done."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.conn: Connection | None = None

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        follow_redirects: bool = True,
    ) -> Response:
        return await _follow(self._hop, method, url, dict(headers or {}), body, follow_redirects)

    async def _hop(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[Connection, int, list[tuple[str, str]], bytes]:
        kept, self.conn = self.conn, None
        if kept is not None:
            if kept.origin == origin(url) and kept.reusable:
                try:
                    answer = await kept.request(method, target(url), headers, body)
                except (Disconnected, ConnectionError):
                    pass  # closed while idle: once more, on a new one
                else:
                    self.conn = kept if kept.reusable else None
                    return kept, *answer
            kept.close()
        conn = None
        try:
            conn = await Connection.open(url, self.tls)
            answer = await conn.request(method, target(url), headers, body)
        except OSError as err:
            err.vigil_url = url  # type: ignore[attr-defined]
            err.vigil_connected = conn is not None  # type: ignore[attr-defined]
            if conn is not None:
                conn.close()
            raise
        # any other error closed it already (Connection.request)
        self.conn = conn if conn.reusable else None
        if self.conn is None:
            conn.close()
        return conn, *answer

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


async def _follow(
    hop: Hop,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    follow_redirects: bool,
) -> Response:
    redirects = 0
    while True:
        conn, status, answer, data = await hop(method, url, headers, body)
        response = Response(status, answer, data, url, conn.peer_cert)
        location = response.header("location")
        if not (follow_redirects and status in REDIRECTS and location):
            return response
        redirects += 1
        if redirects > MAX_REDIRECTS:
            raise TooManyRedirects(urljoin(url, location))
        url, method, headers, body = redirected(url, status, location, method, headers, body)


if sys.version_info >= (3, 11):
    # unlike wait_for, it never loses a cancellation that meets the end of
    # the awaited work (CPython gh-86296): a stop or reload would wait for ever
    deadline = asyncio.timeout
else:  # pragma: no cover - 3.10

    @contextlib.asynccontextmanager
    async def deadline(seconds: float) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        fired = False

        def expire() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()
