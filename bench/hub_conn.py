#!/usr/bin/env python3
"""A legitimate agent's delivery latency while clients hold the hub's
connections or memory (issue 13, items 1 and 2; hub/guard.py).

Starts `vigil hub run` on loopback (defaults, but `max_connections =
--cap`), then for each scenario runs one well-behaved client that posts
`--batches` real batches (one collection cycle of this host, msgpack +
zstd, as the shipper sends them, over one kept-alive connection), waiting
`Retry-After` on 429/503 as the agent does. Its latency is from the first
attempt of a batch to the 200 that stores it, retries included.

Scenarios:
- baseline: nobody else.
- slow headers: `--slow` connections (default cap + 100) that send their
  request headers a byte a second and reconnect as soon as they are cut
  off (the issue: 1,100 against a hub at 1,024 fds).
- idle: `--slow` connections that connect and send nothing, reconnecting.
- unfinished bodies: `--bodies` hosts with genuine tokens each send all
  but the last KiB of an 8 MiB body and stall, reconnecting when answered
  (the issue: 60 of them took RSS from 51 to 976 MiB). The hub's RSS is
  printed before and at its peak.

    .venv/bin/python -m bench.hub_conn [--batches 30] [--cap 1000] [--bodies 60]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from agent.core import protocol
from agent.core.retry import retry_after
from bench.buffer import one_cycle_of_records
from bench.common import free_port, status_kib, wait_healthy
from hub.auth import host_token

MiB = 1 << 20


async def legit(url: str, secret: bytes, batches: int, cycle: list[dict]) -> list[float]:
    """The agent's way: one connection, one batch at a time; latencies in s."""
    host = f"legit-{secrets.token_hex(3)}"
    headers = {
        "Authorization": f"Bearer {host_token(host, secret)}",
        "Content-Encoding": "zstd",
        "Content-Type": "application/msgpack",
    }
    stream, seq, latencies = secrets.token_hex(16), 1, []
    connector = aiohttp.TCPConnector(limit=1)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(batches):
            records = [dict(r, ts=time.time()) for r in cycle]
            body = protocol.compress(protocol.encode_batch(host, stream, seq, records, "b", 0.0))
            start = time.monotonic()
            while True:
                try:
                    async with session.post(url + "/v1/ingest", data=body, headers=headers) as r:
                        await r.read()
                        status, after = r.status, retry_after(r.headers.get("Retry-After"))
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    status, after = 0, None
                if status == 200:
                    break
                await asyncio.sleep(after if after is not None else 0.2)
            latencies.append(time.monotonic() - start)
            seq += len(records)
            await asyncio.sleep(0.2)
    return latencies


async def slow_headers(port: int, stop: asyncio.Event, idle: bool) -> None:
    """One connection at a time, forever: headers a byte a second (or nothing)."""
    request = b"POST /v1/ingest HTTP/1.1\r\nHost: hub\r\nX-Padding: " + b"a" * 10_000
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            for byte in request:
                if stop.is_set() or reader.at_eof():
                    break
                if not idle:
                    writer.write(bytes([byte]))
                    await writer.drain()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(1024), 1.0)
        except OSError:
            pass
        finally:
            writer.close()


async def unfinished_body(port: int, host: str, secret: bytes, stop: asyncio.Event) -> None:
    head = (
        f"POST /v1/ingest HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
        f"{host_token(host, secret)}\r\nContent-Encoding: zstd\r\nContent-Length: {8 * MiB}\r\n\r\n"
    ).encode()
    chunk = b"\x00" * MiB
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(head)
            for i in range(8):
                writer.write(chunk if i < 7 else chunk[:-1024])
                await writer.drain()
            await reader.read()  # until the hub answers (408, 429, 503) and closes
        except OSError:
            pass
        finally:
            writer.close()


async def scenario(
    url: str,
    secret: bytes,
    args: argparse.Namespace,
    cycle: list[dict],
    attackers: Callable[[asyncio.Event], list[Awaitable[None]]],
) -> list[float]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(a) for a in attackers(stop)]  # type: ignore[arg-type]
    await asyncio.sleep(args.settle)
    try:
        return await legit(url, secret, args.batches, cycle)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--cap", type=int, default=1000, help="[hub] max_connections")
    parser.add_argument("--slow", type=int, default=0, help="default: cap + 100")
    parser.add_argument("--bodies", type=int, default=60)
    parser.add_argument("--settle", type=float, default=3.0, help="s of attack before measuring")
    args = parser.parse_args()
    slow = args.slow or args.cap + 100
    cycle = one_cycle_of_records()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-conn-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp / "hub.toml").write_text(
        f'[hub]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{tmp}"\nmax_connections = {args.cap}\n'
    )
    hub = subprocess.Popen(
        [sys.executable, "-m", "agent", "hub", "run", "--config", str(tmp / "hub.toml")],
        stdout=(tmp / "hub.log").open("wb"),
    )
    rows = []
    try:
        wait_healthy(url, hub)
        secret = (tmp / "hub.secret").read_bytes().strip()
        rss_idle = status_kib(hub.pid)
        scenarios: list[tuple[str, Callable[[asyncio.Event], list[Awaitable[None]]]]] = [
            ("baseline", lambda stop: []),
            (
                f"{slow} slow headers",
                lambda stop: [slow_headers(port, stop, False) for _ in range(slow)],
            ),
            (f"{slow} idle", lambda stop: [slow_headers(port, stop, True) for _ in range(slow)]),
            (
                f"{args.bodies} unfinished 8 MiB bodies",
                lambda stop: [
                    unfinished_body(port, f"attacker-{i}", secret, stop) for i in range(args.bodies)
                ],
            ),
        ]
        for name, attackers in scenarios:
            before = status_kib(hub.pid)
            lat = asyncio.run(scenario(url, secret, args, cycle, attackers))
            rows.append((name, lat, before, status_kib(hub.pid, "VmHWM")))
    finally:
        hub.terminate()
        hub.wait(30)
    print(
        f"hub: max_connections = {args.cap}, other limits default; a legitimate client posts"
        f" {args.batches} batches of {len(cycle)} records, one at a time"
    )
    base = statistics.median(rows[0][1])
    print(
        f"{'scenario':>32} {'median ms':>10} {'max ms':>9} {'x baseline':>11}"
        f" {'RSS before MB':>14} {'peak RSS MB':>12}"
    )
    for name, lat, before, peak in rows:
        med = statistics.median(lat)
        print(
            f"{name:>32} {med * 1000:10.1f} {max(lat) * 1000:9.1f} {med / base:11.2f}"
            f" {before / 1024:14.1f} {peak / 1024:12.1f}"
        )
    print(f"hub RSS idle {rss_idle / 1024:.1f} MB; log lines: {tmp / 'hub.log'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
