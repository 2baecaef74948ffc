"""A real hub against clients that hold what they should not (hub/guard.py):
slow headers, idle connections, more connections than the cap, unfinished
authenticated bodies, a body that stalls. Each attack is bounded in count
and time, on loopback; then a well-behaved client delivers everything."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
import urllib.error
import urllib.request

import pytest

from agent.core import protocol
from hub.auth import host_token
from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, wait_http
from tests.e2e.test_hub_ingest import HubProcess, memory_kib

MiB = 1 << 20


def connect(port: int, send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if send:
        sock.sendall(send)
    return sock


def answer(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """What the hub sent until it closed the connection (or `timeout`)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def reply(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """One HTTP response, read by its Content-Length (the hub may keep the
    connection open a while, reading and dropping the rest of the body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(
            b":"
        )[1]
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_by_hub(sock: socket.socket) -> bool:
    """True once the hub has closed `sock` (EOF or reset); never blocks."""
    sock.setblocking(False)
    try:
        while chunk := sock.recv(65536):
            assert not chunk.startswith(b"HTTP/1.1 2"), chunk
        return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def readable(socks: list[socket.socket]) -> list[socket.socket]:
    out = []
    for sock in socks:
        sock.setblocking(False)
        try:
            if sock.recv(1, socket.MSG_PEEK):
                out.append(sock)
        except BlockingIOError:
            pass
    return out


def assert_busy(response: bytes, status: int) -> None:
    head = response.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith(f"HTTP/1.1 {status} "), response[:300]
    assert "\r\nretry-after: 1\r\n" in head.lower() + "\r\n", head
    assert "\r\nconnection: close" in head.lower(), head


def post_batches(hub: HubProcess, host: str, batches: int, per_batch: int = 50) -> str:
    """A well-behaved client: post `batches` real batches in order, waiting
    Retry-After on 429/503 as the agent does; returns the stream id."""
    token = host_token(host, (hub.config.parent / "hub" / "hub.secret").read_bytes().strip())
    stream, seq = secrets.token_hex(16), 1
    for _ in range(batches):
        records = [
            {
                "kind": "metric",
                "name": "legit",
                "labels": {"n": str(seq + i)},
                "value": seq + i,
                "type": "gauge",
                "ts": time.time(),
            }
            for i in range(per_batch)
        ]
        body = protocol.compress(protocol.encode_batch(host, stream, seq, records, "t", 0.0))
        request = urllib.request.Request(
            hub.url + "/v1/ingest",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Encoding": "zstd"},
        )

        def send(request: urllib.request.Request = request) -> dict | None:
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as exc:
                with exc:
                    assert exc.code in (429, 503), (exc.code, exc.read())
                    assert exc.headers["Retry-After"] == "1"
                time.sleep(1)
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.2)  # displaced or closed while connecting: try again
            return None

        done = wait_for(send, timeout=60, what="the batch accepted")
        assert done["last_seq"] == seq + per_batch - 1
        seq += per_batch
    return stream


def delivered(hub: HubProcess, host: str, stream: str, last_seq: int) -> None:
    [entry] = [h for h in hub.get("/v1/hosts")["hosts"] if h["id"] == host]
    assert entry["streams"] == [{"stream": stream, "last_seq": last_seq, "lost": 0}]


@pytest.fixture
def slow_hub(tmp_path):
    hub = HubProcess(
        tmp_path,
        extra='max_connections = 50\nheader_timeout = "6s"\nidle_timeout = "6s"\n',
    )
    yield hub
    if hub.proc.poll() is None:
        hub.stop()


def test_slow_and_idle_connections_are_capped_and_closed_then_an_agent_delivers(slow_hub, tmp_path):
    hub = slow_hub
    port = hub.port
    # an idle keep-alive connection: one request, then silence
    idle = connect(port, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
    idle.settimeout(10)
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")
    silent = connect(port)  # connects and never sends a byte
    # 58 more that send their headers slowly: 60 connections against a cap of 50
    slow = [connect(port, b"POST /v1/ingest HTTP/1.1\r\nHost: hub\r\n") for _ in range(58)]
    everyone = [idle, silent, *slow]

    # past the cap: an immediate 503 with Retry-After, without reading the request
    refused = wait_for(lambda: readable(slow), timeout=10, what="503 to connections past the cap")
    for sock in refused:
        assert_busy(answer(sock), 503)
    with pytest.raises(urllib.error.HTTPError) as probe:
        urllib.request.urlopen(hub.url + "/healthz", timeout=10)
    assert probe.value.code == 503 and probe.value.headers["Retry-After"] == "1"
    probe.value.close()

    # a real agent starts while the slow clients hold the hub
    agent = Agent(
        tmp_path,
        agent_config(
            tmp_path,
            f'host_id = "edge-7"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token("edge-7")}"\n'
            'max_backoff = "1s"\n[buffer]\nflush_interval = "200ms"\n',
        ),
    )
    try:
        # the slow ones keep trickling header bytes: that does not extend their time
        last_trickle = [0.0]

        def all_closed() -> bool:
            open_ = [s for s in everyone if not closed_by_hub(s)]
            if time.monotonic() - last_trickle[0] > 0.5:
                last_trickle[0] = time.monotonic()
                for sock in open_:
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
            return not open_

        wait_for(all_closed, timeout=60, what="slow, silent and idle connections closed")

        agent.notify.wait("READY=1")

        def caught_up():
            hosts = hub.get("/v1/hosts")["hosts"]
            return hosts and hosts[0]["streams"][0]["last_seq"] >= 20 and hosts[0]["streams"][0]

        wait_for(caught_up, timeout=30, what="the agent's records at the hub")
    finally:
        code = agent.stop()
    assert code == 0
    # the agent delivered what it collected, none of it lost or doubled
    [host] = hub.get("/v1/hosts")["hosts"]
    assert host["streams"][0]["lost"] == 0
    series = hub.get("/v1/metrics?host=edge-7&name=memory_total_bytes")["series"]
    stamps = [ts for ts, _ in series[0]["points"]]
    assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))
    for sock in everyone:
        sock.close()


@pytest.fixture
def body_hub(tmp_path):
    hub = HubProcess(
        tmp_path,
        max_body="8MiB",
        extra='body_timeout = "4s"\nmax_inflight_bodies = 4\nmax_inflight_per_host = 1\n',
    )
    yield hub
    if hub.proc.poll() is None:
        hub.stop()


def unfinished_body(hub: HubProcess, host: str, length: int = 8 * MiB) -> bytes:
    token = host_token(host, (hub.config.parent / "hub" / "hub.secret").read_bytes().strip())
    return (
        f"POST /v1/ingest HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Encoding: zstd\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_unfinished_bodies_are_capped_memory_stays_bounded_then_a_client_delivers(body_hub):
    hub = body_hub
    wait_http(hub.url + "/healthz")
    rss_before = memory_kib(hub.proc.pid, "VmRSS")
    # four hosts each send all but the last byte of an 8 MiB body: they hold every slot
    holders = []
    for i in range(4):
        sock = connect(hub.port, unfinished_body(hub, f"attacker-{i}"))
        sock.sendall(b"\x00" * (8 * MiB - 1))  # returns once the hub has read most of it
        holders.append(sock)
    # the same host again: 429 at once, whatever else happens
    again = connect(hub.port, unfinished_body(hub, "attacker-0") + b"\x00" * 1000)
    assert_busy(reply(again), 429)
    again.close()
    # twelve more hosts: each is refused (503 at once) or, if a held body has
    # taken over 2 s, displaces it (that one gets the 503): twelve 503s either way
    others = [
        connect(hub.port, unfinished_body(hub, f"attacker-{i}") + b"\x00" * 1000)
        for i in range(4, 16)
    ]
    # the held bodies cost about their size: 32 MiB; without a cap 16 such
    # bodies took about 240 MiB. A generous bound, not a measurement.
    grown = memory_kib(hub.proc.pid, "VmRSS") - rss_before
    assert grown < 100 * 1024, f"RSS grew {grown} KiB"
    # no body ever finishes: each is answered 503 (busy) or, once it has
    # taken body_timeout, 408; then the connection closes
    answers = [reply(sock, timeout=30) for sock in holders + others]
    busy = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
    assert len(busy) == 12, [a[:12] for a in answers]
    for a in busy:
        assert_busy(a, 503)
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers if a not in busy)
    for sock in holders + others:
        sock.close()
    # a well-behaved client delivers everything, nothing lost
    stream = post_batches(hub, "legit-1", batches=5)
    delivered(hub, "legit-1", stream, 250)
    assert memory_kib(hub.proc.pid, "VmHWM") - rss_before < 150 * 1024


def test_a_body_that_stalls_midway_gets_408_and_the_connection_closes(body_hub):
    hub = body_hub
    sock = connect(hub.port, unfinished_body(hub, "staller", length=100_000) + b"\x00" * 50_000)
    response = answer(sock, timeout=30)  # answer() returns once the hub closes
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), response[:200]
    assert b"did not arrive within 4 s" in body
    sock.close()
    stream = post_batches(hub, "staller", batches=2)  # the same host is not locked out
    delivered(hub, "staller", stream, 100)
