"""[[scrape]] (collectors/scrape.py ScrapeCollector) against servers on
loopback: the connection kept from one scrape to the next, and what ends
it: a server that closes it, a timeout in the middle of an answer, the
collector's schedule ending."""

from __future__ import annotations

import asyncio

# imported here, not on the loop in the first scrape: its import reads
# /proc/self (a registry's process collector), which blockbuster refuses
import prometheus_client.parser  # noqa: F401

from collectors.scrape import ScrapeCollector, ScrapeConfig
from tests.agent.test_h1 import answer, read_request, serve


async def values(collector: ScrapeCollector, ts: float) -> dict[str, float]:
    return {r.name: r.value for r in await collector.collect(ts, ts)}  # type: ignore[union-attr]


def test_one_connection_serves_every_scrape_until_the_server_ends_it() -> None:
    """Three scrapes on one connection; then the server closes it while idle
    (a restart, an idle timeout): the next scrape is up, on a new one."""
    ended = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        for i in range(3 if n == 1 else 100):
            await read_request(r)
            body = f"# TYPE conn gauge\nconn {n}\n# TYPE scrape gauge\nscrape {i}\n"
            w.write(answer("200 OK", body.encode(), "Content-Type: text/plain\r\n"))
            await w.drain()
        w.close()
        ended.set()

    async def scenario(url: str) -> list[tuple[float, float, float]]:
        collector = ScrapeCollector(ScrapeConfig(name="t", url=url + "/metrics"), 5.0)
        seen = []
        for ts in range(3):
            got = await values(collector, float(ts))
            seen.append((got["scrape_up"], got["conn"], got["scrape"]))
        await ended.wait()
        got = await values(collector, 3.0)
        seen.append((got["scrape_up"], got["conn"], got["scrape"]))
        collector.close()
        return seen

    assert serve(handler, scenario) == [(1, 1, 0), (1, 1, 1), (1, 1, 2), (1, 2, 0)]


def test_a_scrape_timed_out_mid_answer_is_down_and_the_next_reads_a_whole_answer() -> None:
    closed = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            line, _, _ = await read_request(r)
            if line.split()[1] == "/slow":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nconn 1\n")
                await w.drain()
                if await r.read(100) == b"":  # the scraper let go of it
                    closed.set()
                return
            w.write(answer("200 OK", f"conn {n}\n".encode()))
            await w.drain()

    async def scenario(url: str) -> list[object]:
        slow = ScrapeCollector(ScrapeConfig(name="t", url=url + "/slow"), 0.3)
        down = await values(slow, 0.0)
        await closed.wait()
        slow.close()
        fine = ScrapeCollector(ScrapeConfig(name="t", url=url + "/metrics"), 5.0)
        first, second = await values(fine, 1.0), await values(fine, 2.0)
        fine.close()
        return [down["scrape_up"], "conn" in down, slow.error, first["conn"], second["conn"]]

    assert serve(handler, scenario) == [0, False, "timed out after 0.3s", 2, 2]


def test_closing_the_collector_closes_its_connection() -> None:
    """What the scheduler does when a reload or a stop ends the schedule."""
    eof = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await read_request(r)
        w.write(answer("200 OK", b"up_here 1\n"))
        await w.drain()
        if await r.read(100) == b"":
            eof.set()

    async def scenario(url: str) -> float:
        collector = ScrapeCollector(ScrapeConfig(name="t", url=url + "/metrics"), 5.0)
        got = await values(collector, 0.0)
        collector.close()
        await eof.wait()
        return got["up_here"]

    assert serve(handler, scenario) == 1


def test_a_target_that_redirects_is_followed() -> None:
    """The kept GET returns a redirect as it came; the scrape follows it
    with h1 (Prometheus follows a scrape's redirects too)."""

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            line, _, _ = await read_request(r)
            if line.split()[1] == "/metrics":
                w.write(answer("301 Moved Permanently", b"", "Location: /real\r\n"))
            else:
                w.write(answer("200 OK", b"# TYPE moved gauge\nmoved 7\n"))
            await w.drain()

    async def scenario(url: str) -> dict[str, float]:
        collector = ScrapeCollector(ScrapeConfig(name="t", url=url + "/metrics"), 5.0)
        got = await values(collector, 1.0)
        collector.close()
        return got

    got = serve(handler, scenario)
    assert got["scrape_up"] == 1 and got["moved"] == 7
