"""agent/core/keptget.py: a scrape's GET on a kept connection, against
servers on loopback that end it in every way, and answers of every shape."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from agent.core import h1
from agent.core.keptget import KeptGet
from tests.agent.test_h1 import answer, read_request, serve


def test_one_connection_serves_every_get_until_the_server_closes_it_while_idle() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        for i in range(2):
            line, headers, _ = await read_request(r)
            assert line.startswith("GET /metrics?x=1 HTTP/1.1")
            assert headers["accept"] == "text/plain" and headers["accept-encoding"] == "identity"
            w.write(answer("200 OK", f"conn {n} get {i}".encode()))
            await w.drain()
        w.close()  # idle: a restart, an idle timeout

    async def scenario(url: str) -> list[bytes]:
        kept = KeptGet(url + "/metrics?x=1", {"Accept": "text/plain"})
        got = [(await kept.get()).body for _ in range(5)]
        kept.close()
        return got

    # the third GET went on the closed connection and was made again on a new one
    assert serve(handler, scenario) == [
        b"conn 1 get 0",
        b"conn 1 get 1",
        b"conn 2 get 0",
        b"conn 2 get 1",
        b"conn 3 get 0",
    ]


def test_connection_close_chunked_gzip_and_a_body_ended_by_the_close() -> None:
    bodies = {
        1: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        2: answer("200 OK", gzip.compress(b"hello world"), "Content-Encoding: gzip\r\n"),
        3: answer("200 OK", b"hello world", "Connection: close\r\n"),
        4: b"HTTP/1.0 200 OK\r\n\r\nhello world",  # no length: the close ends it
        5: b"HTTP/1.1 100 Continue\r\n\r\n" + answer("200 OK", b"hello world"),
    }

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(bodies[n])
        await w.drain()
        if n in (3, 4):
            w.close()
            return
        await read_request(r)  # kept: the next comes on it
        w.write(answer("200 OK", b"next"))
        await w.drain()
        await r.read(1)

    async def scenario(url: str) -> list[tuple[int, bytes]]:
        out = []
        for _ in range(5):
            kept = KeptGet(url, {})
            response = await kept.get()
            out.append((response.status, response.body))
            if kept.conn is not None:
                out.append((0, (await kept.get()).body))
            kept.close()
        return out

    assert serve(handler, scenario) == [
        (200, b"hello world"),
        (0, b"next"),
        (200, b"hello world"),
        (0, b"next"),
        (200, b"hello world"),  # Connection: close: not kept
        (200, b"hello world"),  # HTTP/1.0, no length: not kept
        (200, b"hello world"),  # after 100 Continue
        (0, b"next"),
    ]


def test_a_timeout_mid_answer_closes_it_and_the_next_get_reads_a_whole_answer() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        if n == 1:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            await w.drain()
            assert await r.read(100) == b""  # the client let go of it
            return
        w.write(answer("200 OK", b"whole"))
        await w.drain()
        await r.read(1)

    async def scenario(url: str) -> bytes:
        kept = KeptGet(url, {})
        with pytest.raises(TimeoutError):
            async with h1.deadline(0.3):
                await kept.get()
        body = (await kept.get()).body
        kept.close()
        return body

    assert serve(handler, scenario) == b"whole"


def test_bytes_past_an_answer_are_never_read_as_the_next_one() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        extra = answer("200 OK", b"forged") if n == 1 else b""
        w.write(answer("200 OK", f"answer {n}".encode()) + extra)
        await w.drain()
        await r.read(1)

    async def scenario(url: str) -> list[bytes]:
        kept = KeptGet(url, {})
        got = [(await kept.get()).body, (await kept.get()).body]
        kept.close()
        return got

    assert serve(handler, scenario) == [b"answer 1", b"answer 2"]


def test_malformed_oversized_and_cut_answers_are_errors(monkeypatch) -> None:
    monkeypatch.setattr(h1, "MAX_BODY", 1000)
    answers = {
        1: b"HTTP/1.1 2x0 OK\r\n\r\n",
        2: answer("200 OK", b"y" * 2000),
        3: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",  # then the close
        4: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    }

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(answers[n])
        await w.drain()

    async def scenario(url: str) -> list[str]:
        out = []
        for _ in answers:
            kept = KeptGet(url, {})
            with pytest.raises(h1.HttpError) as info:
                await kept.get()
            out.append(str(info.value))
            assert kept.conn is None
        return out

    got = serve(handler, scenario)
    assert "invalid HTTP answer" in got[0]
    assert "over 0 MiB" in got[1]
    assert "without a complete answer" in got[2]
    assert "switched protocols" in got[3]


def test_a_redirect_is_returned_as_it_came() -> None:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(answer("302 Found", b"", "Location: /elsewhere\r\n"))
        await w.drain()
        await r.read(1)

    async def scenario(url: str) -> tuple[int, str]:
        kept = KeptGet(url, {})
        response = await kept.get()
        kept.close()
        return response.status, response.header("location")

    assert serve(handler, scenario) == (302, "/elsewhere")


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        KeptGet("http://127.0.0.1:1/", {"Accept": "a\r\nX-Injected: 1"})
