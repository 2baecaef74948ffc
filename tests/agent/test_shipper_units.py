import email.utils
import random
import time

import pytest

from agent.core.retry import full_jitter, retry_after


def test_retry_after_seconds_and_http_dates():
    assert retry_after("120") == 120.0
    assert retry_after(None) is None and retry_after("") is None and retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after(later) == pytest.approx(30, abs=2)
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after(past) == 0.0


def test_full_jitter_stays_within_the_growing_cap():
    rng = random.Random(1)
    for attempt in range(1, 40):
        bound = min(60.0, 2.0**attempt)
        waits = [full_jitter(attempt, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= w <= bound for w in waits)
        assert max(waits) > bound / 2  # spread over the range, not stuck low


def test_the_ship_loop_outlives_an_unexpected_error(tmp_path, monkeypatch):
    """A request aiohttp refuses to build (or a bug) is logged, counted as a
    retry and shown; the loop goes on and the next attempt is made."""
    import asyncio

    from agent.config import AgentSection, Config, HubSection
    from agent.shipper import Shipper

    config = Config(
        agent=AgentSection(state_dir=tmp_path), hub=HubSection(url="http://127.0.0.1:9", token="t")
    )
    shipper = Shipper(config, "t", random.Random(1))
    attempts: list[int] = []

    async def ship_one() -> float | None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("Forbidden control character detected in headers")
        await asyncio.sleep(3600)
        return None

    monkeypatch.setattr(shipper, "_ship_one", ship_one)
    monkeypatch.setattr("agent.shipper.full_jitter", lambda *a: 0.01)

    async def scenario() -> None:
        task = asyncio.create_task(shipper._ship_loop())
        while len(attempts) < 2:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert shipper.retries == 1 and "control character" in (shipper.last_error or "")


def test_one_token_episode_across_hubs_until_a_batch_is_taken(tmp_path):
    """Two hubs, one down and one refusing the token: their errors alternate,
    and the refusal is still one episode (one lifecycle event), not one per try."""
    from agent.config import AgentSection, Config, HubSection
    from agent.shipper import Shipper

    urls = ("http://127.0.0.1:9", "http://127.0.0.1:10")
    config = Config(agent=AgentSection(state_dir=tmp_path), hub=HubSection(urls=urls, token="t"))
    shipper = Shipper(config, "t", random.Random(1))
    added: list[object] = []
    shipper.add = added.extend  # type: ignore[method-assign]
    for _ in range(5):
        shipper._failed("hub unreachable: ClientConnectorError")
        shipper._auth_failed(401, "missing or invalid bearer token")
    assert shipper.auth_failures == 5 and len(added) == 1
    shipper.refused = False  # what a batch taken does: a new refusal is a new episode
    shipper._auth_failed(401, "revoked")
    assert len(added) == 2


def test_the_first_records_after_a_start_are_written_at_once(tmp_path):
    """After a start (a crash), the first records go to the disk buffer as
    soon as they exist; later ones wait for `flush_interval` (an hour
    here), as before. bench/startup.py measures the time it saves."""
    import asyncio
    import time

    from agent.config import AgentSection, BufferSection, Config, HubSection
    from agent.core.records import Metric
    from agent.shipper import Shipper

    config = Config(
        agent=AgentSection(state_dir=tmp_path),
        hub=HubSection(url="http://127.0.0.1:9", token="t"),
        buffer=BufferSection(flush_interval=3600.0),
    )
    shipper = Shipper(config, "t", random.Random(1))

    async def scenario() -> None:
        await shipper.start()
        try:
            assert shipper.buffer is not None
            first = shipper.buffer.next_seq
            shipper.add([Metric("m", 1.0, time.time())])
            while shipper.buffer.next_seq == first:
                await asyncio.sleep(0.01)
            assert shipper.buffer.next_seq == first + 1 and shipper.pending == []
            shipper.add([Metric("m", 2.0, time.time())])
            await asyncio.sleep(0.2)
            assert len(shipper.pending) == 1  # held for the next flush
        finally:
            await shipper.stop(time.monotonic() + 5)

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_a_kept_connection_the_hub_dropped_is_replaced_for_the_same_send(tmp_path):
    """The hub closes an idle keep-alive connection; the next send fails on
    it at once and is made again on a new one, with no error shown."""
    import asyncio

    from agent.config import AgentSection, Config, HubSection
    from agent.shipper import Shipper

    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")  # the POST's head; its body is empty here
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"last_seq":1}')
        await writer.drain()
        writer.close()  # an idle timeout right after the answer

    async def scenario() -> list[int]:
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/ingest"
        config = Config(agent=AgentSection(state_dir=tmp_path), hub=HubSection(url=url, token="t"))
        shipper = Shipper(config, "t", random.Random(1))
        statuses = []
        for _ in range(3):
            status, _, _ = await shipper._post(url, b"", {})
            statuses.append(status)
            await asyncio.sleep(0.05)  # the close reaches us
        assert shipper.conn is not None
        await shipper.conn.aclose()
        server.close()
        return statuses

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [200, 200, 200]
    assert len(connections) == 3


def test_a_hub_behind_a_permanent_redirect_still_gets_the_batch(tmp_path):
    """A 308 (a moved path, or a proxy in front of the hub) is followed with
    the same POST, body and token on the same origin, as aiohttp did."""
    import asyncio

    from agent.config import AgentSection, Config, HubSection
    from agent.shipper import Shipper

    seen: list[tuple[bytes, bytes]] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            seen.append((head.split(b"\r\n")[0], body))
            auth = b"authorization: bearer t" in head.lower()
            if head.startswith(b"POST /v1/ingest ") and auth:
                writer.write(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: /hub/v1/ingest\r\n")
                writer.write(b"Content-Length: 0\r\n\r\n")
            elif auth:
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"last_seq":1}')
            else:
                writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()

    async def scenario() -> int:
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/ingest"
        config = Config(agent=AgentSection(state_dir=tmp_path), hub=HubSection(url=url, token="t"))
        shipper = Shipper(config, "t", random.Random(1))
        status, _, _ = await shipper._post(url, b"batch", {"Authorization": "Bearer t"})
        assert shipper.conn is not None
        await shipper.conn.aclose()
        server.close()
        return status

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == 200
    assert seen == [
        (b"POST /v1/ingest HTTP/1.1", b"batch"),
        (b"POST /hub/v1/ingest HTTP/1.1", b"batch"),
    ]
