"""The tcp probe against real loopback servers: an asyncio server that
answers, one that closes with the wrong answer, one that never answers, a
closed port, and nginx's TLS ports for tls = true."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from agent.core.schema import build
from collectors.checks.model import Outcome, ProbeContext
from collectors.checks.tcp import TcpCheck
from tests.collectors.checks.certs import Certs
from tests.collectors.checks.nginx import TLS_BODY, Nginx, free_ports

SECONDS = 1 / 86400
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def check(**data: Any) -> TcpCheck:
    return build(TcpCheck, {"name": "port", "type": "tcp", **data}, "test.toml")


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    """A loopback server running `handler` per connection; its address."""
    tasks: set[asyncio.Task[Any]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        # Each handler closes its connection before the test's loop ends.
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


def probe_server(handler: Handler, **data: Any) -> Outcome:
    async def main() -> Outcome:
        async with server(handler) as address:
            return await check(address=address, **data).probe(ProbeContext())

    return asyncio.run(main())


async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Redis-like PING -> +PONG."""
    if await reader.readline() == b"PING\r\n":
        writer.write(b"+PONG\r\n")
        await writer.drain()


async def greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mail.example ESMTP ready\r\n")
    await writer.drain()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()


def test_listening_port() -> None:
    outcome = probe_server(greeting)
    assert (outcome.ok, outcome.status, outcome.message) == (True, "ok", "")
    assert outcome.cert_expiry_days is None
    assert 0 < outcome.latency < 2


def test_closed_port_is_refused() -> None:
    port = free_ports(1)[0]
    outcome = asyncio.run(check(address=f"127.0.0.1:{port}").probe(ProbeContext()))
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "connection refused"


def test_send_and_expect() -> None:
    outcome = probe_server(pong, send="PING\r\n", expect="+PONG")
    assert outcome.ok, outcome.message


def test_expect_a_greeting_without_sending() -> None:
    assert probe_server(greeting, expect="ESMTP").ok


def test_answer_without_the_expected_text() -> None:
    outcome = probe_server(greeting, expect="+PONG")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "expected '+PONG', got '220 mail.example ESMTP ready\\r\\n'"


def test_long_answers_are_cut_in_the_message() -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"x" * 500)
        await writer.drain()

    outcome = probe_server(chatty, expect="y")
    assert outcome.message == f"expected 'y', got '{'x' * 60}...'"


def test_server_that_never_answers_times_out_at_the_timeout() -> None:
    outcome = probe_server(silent, send="PING\r\n", expect="+PONG", timeout="500ms")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "timed out after 0.5s: expected '+PONG', got ''"
    assert outcome.latency == pytest.approx(0.5, abs=0.25)


# -- tls = true, against nginx ------------------------------------------------------------


def probe_nginx(nginx: Nginx, cfg: TcpCheck) -> Outcome:
    async def main() -> Outcome:
        outcome = await cfg.probe(ProbeContext())
        await nginx.disconnected()
        return outcome

    return asyncio.run(main())


def probe_tls(nginx: Nginx, certs: Certs, kind: str, **data: Any) -> tuple[Outcome, float]:
    cfg = check(address=nginx.address(kind), tls=True, server_name="localhost", **data)
    outcome = probe_nginx(nginx, cfg)
    return outcome, certs.days_left(kind, datetime.now(timezone.utc))


def test_tls_exchange(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_tls(
        nginx,
        certs,
        "valid",
        ca_file=str(certs.ca),
        send="GET / HTTP/1.0\r\nHost: localhost\r\n\r\n",
        expect=TLS_BODY,
    )
    assert (outcome.ok, outcome.message) == (True, "")
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert outcome.cert["subject"] == "CN=valid test server"


def test_tls_expired(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_tls(nginx, certs, "expired", ca_file=str(certs.ca))
    assert (outcome.ok, outcome.message) == (False, "certificate has expired (3.0 days ago)")
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_tls_wrong_name(nginx: Nginx, certs: Certs) -> None:
    outcome, _ = probe_tls(nginx, certs, "wrong_name", ca_file=str(certs.ca))
    assert outcome.message == "hostname mismatch: certificate is for wrong.example, *.other.example"


def test_tls_without_verification(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_tls(
        nginx, certs, "expired", verify_tls=False, send="GET / HTTP/1.0\r\n\r\n", expect="200 OK"
    )
    assert outcome.ok, outcome.message
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_tls_to_a_plain_port(nginx: Nginx) -> None:
    cfg = check(address=f"127.0.0.1:{nginx.http_port}", tls=True)
    outcome = probe_nginx(nginx, cfg)
    assert (outcome.ok, outcome.message) == (False, "TLS handshake failed: wrong version number")
