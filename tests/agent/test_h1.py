"""agent/core/h1.py against servers on loopback that answer in raw bytes,
well and badly: chunked and compressed bodies, keep-alive and its loss,
answers cut short, garbage, bombs, redirects and their credentials."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from collections.abc import Awaitable, Callable

import pytest

from agent.core import h1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


def serve(
    handler: Handler, scenario: Callable[[str], Awaitable[object]], loop: str = "asyncio"
) -> object:
    """Run `scenario(base_url)` against a server calling `handler` for each
    connection (with its number, from 1); on asyncio's loop, or on uvloop
    (`loop="uvloop"`: the agent's loop in production, agent/cli.py)."""

    async def main() -> object:
        count = 0

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            nonlocal count
            count += 1
            try:
                await handler(r, w, count)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.wait_for(scenario(f"http://127.0.0.1:{port}"), 10)
        finally:
            server.close()

    if loop == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


def answer(status: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode("latin-1") + body


def test_chunked_and_compressed_bodies_are_decoded() -> None:
    bodies = {
        "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "/gzip": answer("200 OK", gzip.compress(b"hello world"), "Content-Encoding: gzip\r\n"),
        "/deflate": answer(
            "200 OK", zlib.compress(b"hello world"), "Content-Encoding: deflate\r\n"
        ),
        "/raw-deflate": answer(
            "200 OK",
            zlib.compress(b"hello world", wbits=-15),
            "Content-Encoding: deflate\r\n",
        ),
        # no length: the body ends when the server closes
        "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
    }

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        line, headers, _body = await read_request(r)
        assert headers["accept-encoding"] == "gzip, deflate"
        w.write(bodies[line.split()[1]])
        await w.drain()

    async def scenario(url: str) -> list[bytes]:
        return [(await h1.fetch("GET", url + path)).body for path in bodies]

    assert serve(handler, scenario) == [b"hello world"] * len(bodies)


def test_a_kept_connection_serves_the_next_request() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            _, _, body = await read_request(r)
            w.write(answer("200 OK", f"conn {n} got {body.decode()}".encode()))
            await w.drain()

    async def scenario(url: str) -> list[object]:
        conn = await h1.Connection.open(url)
        first = await conn.request("POST", "/v1/ingest", {}, b"a")
        assert conn.reusable
        second = await conn.request("POST", "/v1/ingest", {}, b"b")
        conn.close()
        return [first[2], second[2]]

    assert serve(handler, scenario) == [b"conn 1 got a", b"conn 1 got b"]


def test_connection_close_ends_reuse_and_a_dropped_keep_alive_says_so() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        if n == 1:
            w.write(answer("200 OK", b"bye", "Connection: close\r\n"))
        else:
            w.write(answer("200 OK", b"kept"))
            await w.drain()
            await read_request(r)  # and closes without answering (an idle timeout)

    async def scenario(url: str) -> list[object]:
        closing = await h1.Connection.open(url)
        await closing.request("GET", "/")
        kept = await h1.Connection.open(url)
        await kept.request("GET", "/")
        with pytest.raises(h1.Disconnected) as err:
            await kept.request("GET", "/")
        return [closing.reusable, kept.reusable, str(err.value)]

    assert serve(handler, scenario) == [
        False,
        False,
        "server closed the connection without a complete answer",
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "without a complete answer"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            "without a complete answer",
        ),
        (b"", "without a complete answer"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "invalid HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "invalid HTTP answer"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnotgz",
            "invalid gzip body",
        ),
    ],
    ids=["short", "cut-chunk", "nothing", "not-http", "bad-length", "huge-header", "bad-gzip"],
)
def test_broken_answers_are_errors_with_a_reason(raw: bytes, message: str) -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        await read_request(r)
        w.write(raw)
        await w.drain()

    async def scenario(url: str) -> str:
        with pytest.raises(h1.HttpError) as err:
            await h1.fetch("GET", url + "/")
        return str(err.value)

    assert message in str(serve(handler, scenario))


def test_a_body_over_the_cap_is_refused_and_so_is_a_compression_bomb(monkeypatch) -> None:
    monkeypatch.setattr(h1, "MAX_BODY", 1000)
    bomb = gzip.compress(b"\0" * 100_000)  # 100 kB from a few hundred bytes

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        line, _, _ = await read_request(r)
        if "bomb" in line:
            w.write(answer("200 OK", bomb, "Content-Encoding: gzip\r\n"))
        else:
            w.write(answer("200 OK", b"x" * 5000))
        await w.drain()

    async def scenario(url: str) -> list[str]:
        out = []
        for path in ("/big", "/bomb"):
            with pytest.raises(h1.HttpError) as err:
                await h1.fetch("GET", url + path)
            out.append(str(err.value))
        return out

    assert serve(handler, scenario) == ["answer body over 0 MiB"] * 2


def test_informational_answers_are_skipped_and_latin1_headers_kept() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        latin1 = "X-Name: caf\xe9\r\nContent-Type: text/plain; charset=latin-1\r\n"
        w.write(answer("200 OK", b"ok", latin1))
        await w.drain()

    async def scenario(url: str) -> tuple[int, str, str | None]:
        resp = await h1.fetch("GET", url + "/")
        return resp.status, resp.header("x-name"), resp.charset

    assert serve(handler, scenario) == (200, "café", "latin-1")


def test_redirects_change_method_as_browsers_do_and_keep_credentials_home() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        line, headers, body = await read_request(r)
        seen.append((line.rsplit(" ", 1)[0], headers, body))
        path = line.split()[1]
        if path == "/form":
            w.write(answer("303 See Other", headers="Location: /done\r\n"))
        elif path == "/keep":
            w.write(answer("307 Temporary Redirect", headers="Location: /done\r\n"))
        elif path == "/away":
            port = w.get_extra_info("sockname")[1]
            w.write(answer("302 Found", headers=f"Location: http://localhost:{port}/done\r\n"))
        elif path == "/loop":
            w.write(answer("302 Found", headers="Location: /loop\r\n"))
        else:
            w.write(answer("200 OK", b"done"))
        await w.drain()

    async def scenario(url: str) -> str:
        auth = {"Authorization": "Bearer s3cret", "Content-Type": "text/plain"}
        await h1.fetch("POST", url + "/form", headers=auth, body=b"a=1")
        await h1.fetch("POST", url + "/keep", headers=auth, body=b"a=1")
        await h1.fetch("GET", url + "/away", headers=auth)
        with pytest.raises(h1.TooManyRedirects) as err:
            await h1.fetch("GET", url + "/loop")
        not_followed = await h1.fetch("GET", url + "/loop", follow_redirects=False)
        assert not_followed.status == 302
        return str(err.value)

    message = serve(handler, scenario)
    assert str(message).startswith("too many redirects (more than 10, last to http://127.0.0.1:")
    _, form_done, _, keep_done, away, away_done = seen[:6]
    assert (form_done[0], form_done[2], "content-type" in form_done[1]) == ("GET /done", b"", False)
    assert (keep_done[0], keep_done[2], keep_done[1]["authorization"]) == (
        "POST /done",
        b"a=1",
        "Bearer s3cret",
    )
    assert away[1]["authorization"] == "Bearer s3cret"
    assert "authorization" not in away_done[1]  # another origin (localhost, not 127.0.0.1)
    assert len(seen) == 6 + 11 + 1


def test_a_header_value_h11_refuses_is_a_value_error_and_nothing_is_sent() -> None:
    got: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        got.append(await r.read(100))

    async def scenario(url: str) -> None:
        with pytest.raises(ValueError, match="cannot send this request"):
            await h1.fetch("GET", url + "/", headers={"X-Token": "a\r\nInjected: yes"})

    serve(handler, scenario)
    assert got == [b""]


def test_an_upgrade_answer_ends_the_exchange_instead_of_spinning() -> None:
    """101 to a websocket Upgrade: h11 pauses; the answer is the 101 (it once
    spun the loop for ever, timeouts and all)."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        await read_request(r)
        w.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        await w.drain()
        await asyncio.sleep(30)  # holds the connection open, as a websocket server would

    async def scenario(url: str) -> int:
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
        return (await h1.fetch("GET", url + "/ws", headers=upgrade)).status

    assert serve(handler, scenario) == 101


def test_a_body_in_tiny_chunks_lets_the_loop_run() -> None:
    """200,000 one-byte chunks arrive faster than they are parsed: the
    exchange yields to the loop (so timeouts and other work go on)."""
    chunked = b"1\r\nx\r\n" * 200_000 + b"0\r\n\r\n"

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        await w.drain()

    async def scenario(url: str) -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        body = (await h1.fetch("GET", url + "/")).body
        task.cancel()
        return len(body), ticks

    size, ticks = serve(handler, scenario)  # type: ignore[misc]
    assert size == 200_000
    assert ticks > 100  # one tick per 256 events at least; none without the yields


def test_targets_are_percent_encoded_and_gzip_members_joined_or_refused_when_cut() -> None:
    seen: list[str] = []
    two_members = gzip.compress(b"hello ") + gzip.compress(b"world")

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        line, _, _ = await read_request(r)
        seen.append(line.split()[1])
        if line.split()[1] == "/caf%C3%A9":
            w.write(answer("302 Found", headers="Location: /a b?q=\xc3\xa9 x\r\n"))
        elif line.split()[1].startswith("/a%20b"):
            w.write(answer("200 OK", two_members, "Content-Encoding: gzip\r\n"))
        else:
            w.write(answer("200 OK", gzip.compress(b"hello")[:-6], "Content-Encoding: gzip\r\n"))
        await w.drain()

    async def scenario(url: str) -> list[object]:
        joined = (await h1.fetch("GET", url + "/café")).body
        with pytest.raises(h1.HttpError, match="invalid gzip body: the compressed body is cut"):
            await h1.fetch("GET", url + "/cut")
        return [joined]

    assert serve(handler, scenario) == [b"hello world"]
    # the Location's raw UTF-8 read as browsers read it, then encoded
    assert seen == ["/caf%C3%A9", "/a%20b?q=%C3%A9%20x", "/cut"]


def test_cross_origin_redirects_drop_what_belongs_to_the_origin_and_head_stays_head() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        line, headers, _ = await read_request(r)
        seen.append((line.rsplit(" ", 1)[0], headers))
        if line.split()[1] == "/a":
            port = w.get_extra_info("sockname")[1]
            w.write(answer("303 See Other", headers=f"Location: http://localhost:{port}/b\r\n"))
        else:
            w.write(answer("200 OK"))
        await w.drain()

    async def scenario(url: str) -> int:
        own = {
            "Host": "internal.example",
            "Proxy-Authorization": "Basic eDp5",
            "Cookie": "s=1",
            "X-Trace": "7",
        }
        return (await h1.fetch("HEAD", url + "/a", headers=own)).status

    assert serve(handler, scenario) == 200
    (first, a), (second, b) = seen
    assert (first, a["host"], a["proxy-authorization"]) == (
        "HEAD /a",
        "internal.example",
        "Basic eDp5",
    )
    assert second == "HEAD /b"
    assert b["host"].startswith("localhost:") and b["x-trace"] == "7"
    assert "proxy-authorization" not in b and "cookie" not in b


def test_header_values_go_as_utf8() -> None:
    """A token for the host id "häst" (the hub compares tokens as bytes)."""
    got: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, _: int) -> None:
        got.append(await r.readuntil(b"\r\n\r\n"))
        w.write(answer("200 OK"))
        await w.drain()

    async def scenario(url: str) -> int:
        return (await h1.fetch("GET", url + "/", headers={"Authorization": "Bearer häst.1"})).status

    assert serve(handler, scenario) == 200
    assert b"\r\nAuthorization: Bearer h\xc3\xa4st.1\r\n" in got[0]


# -- Client: the connection kept between requests (the scrape) ----------------


def keep_alive(answers: Callable[[int, str], bytes | None]) -> Handler:
    """A handler that answers requests on a connection until the client
    closes it, or `answers(connection, path)` gives None: then it closes
    without answering."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            line, _, _ = await read_request(r)
            raw = answers(n, line.split()[1])
            if raw is None:
                return
            w.write(raw)
            await w.drain()

    return handler


def test_a_client_keeps_its_connection_and_leaves_it_when_the_server_says_close() -> None:
    def answers(n: int, path: str) -> bytes:
        close = "Connection: close\r\n" if path == "/close" else ""
        return answer("200 OK", f"conn {n} {path}".encode(), close)

    async def scenario(url: str) -> list[bytes]:
        client = h1.Client()
        paths = ["/a", "/b", "/close", "/c", "/d"]
        bodies = [(await client.fetch("GET", url + path)).body for path in paths]
        client.close()
        return bodies

    assert serve(keep_alive(answers), scenario) == [
        b"conn 1 /a",
        b"conn 1 /b",
        b"conn 1 /close",
        b"conn 2 /c",
        b"conn 2 /d",
    ]


def test_a_kept_connection_the_server_closed_is_replaced_and_the_request_made_again() -> None:
    """Closed while idle, or as the next request came (an idle timeout's
    race): the request goes (again) on a new connection, and succeeds."""
    closed = asyncio.Event()

    def answers(n: int, path: str) -> bytes | None:
        if (n, path) == (1, "/b") or (n, path) == (2, "/c"):
            return None  # conn 1: read the request, closed without answering
        return answer("200 OK", f"conn {n} {path}".encode())

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        try:
            await keep_alive(answers)(r, w, n)
        finally:
            w.close()
            closed.set()

    async def scenario(url: str) -> list[bytes]:
        client = h1.Client()
        bodies = [(await client.fetch("GET", url + "/a")).body]
        bodies.append((await client.fetch("GET", url + "/b")).body)  # conn 1 closes: conn 2
        closed.clear()
        bodies.append((await client.fetch("GET", url + "/c")).body)  # conn 2 closes: conn 3
        await closed.wait()
        bodies.append((await client.fetch("GET", url + "/d")).body)
        client.close()
        return bodies

    assert serve(handler, scenario) == [b"conn 1 /a", b"conn 2 /b", b"conn 3 /c", b"conn 3 /d"]


def test_a_timeout_mid_body_closes_the_connection_and_the_next_request_reads_a_whole_answer() -> (
    None
):
    client_closed = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            await read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nfirst half")
            await w.drain()
            # the rest would come now, were the client still there
            if await r.read(100) == b"":
                client_closed.set()
            w.write(b", late half")
            return
        await keep_alive(lambda n, path: answer("200 OK", f"conn {n} {path}".encode()))(r, w, n)

    async def scenario(url: str) -> list[object]:
        client = h1.Client()
        with pytest.raises(TimeoutError):
            async with h1.deadline(0.3):
                await client.fetch("GET", url + "/slow")
        await client_closed.wait()  # the half-read connection was closed, not kept
        body = (await client.fetch("GET", url + "/next")).body
        client.close()
        return [client.conn, body]

    assert serve(handler, scenario) == [None, b"conn 2 /next"]


def test_bytes_past_an_answer_end_its_connection() -> None:
    """A server that sends more than its answer: what follows is nobody's
    answer, and must not be read as the next one's."""

    def answers(n: int, path: str) -> bytes:
        extra = answer("200 OK", b"forged") if n == 1 else b""
        return answer("200 OK", f"conn {n} {path}".encode()) + extra

    async def scenario(url: str) -> list[bytes]:
        client = h1.Client()
        bodies = [(await client.fetch("GET", url + path)).body for path in ("/a", "/b")]
        client.close()
        return bodies

    assert serve(keep_alive(answers), scenario) == [b"conn 1 /a", b"conn 2 /b"]


def test_a_client_follows_a_restarted_server_and_redirects_on_its_connection() -> None:
    async def main() -> list[bytes]:
        conns: list[asyncio.StreamWriter] = []
        handlers: list[asyncio.Task[object]] = []

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            conns.append(w)
            handlers.append(asyncio.current_task())  # type: ignore[arg-type]
            n = len(conns)
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    line, _, _ = await read_request(r)
                    path = line.split()[1]
                    if path == "/old":
                        w.write(answer("301 Moved Permanently", headers="Location: /new\r\n"))
                    else:
                        w.write(answer("200 OK", f"conn {n} {path}".encode()))
                    await w.drain()
            w.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        client = h1.Client()
        bodies = [(await client.fetch("GET", url + "/old")).body]
        server.close()  # the target restarts: its connections go
        for w in conns:
            w.close()
        await server.wait_closed()
        server = await asyncio.start_server(on_connect, "127.0.0.1", port)
        bodies.append((await client.fetch("GET", url + "/a")).body)
        client.close()
        await asyncio.gather(*handlers)  # each saw its connection end, and closed it
        server.close()
        await server.wait_closed()
        return bodies

    assert asyncio.run(main()) == [b"conn 1 /new", b"conn 2 /a"]
