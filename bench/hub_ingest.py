#!/usr/bin/env python3
"""Hub ingest under a simulated fleet.

Starts `vigil hub run` on loopback, then N simulated agents (asyncio tasks
in this process, each with its own host id, token, stream and sequence
numbers) each push one realistic batch (one collection cycle of this host,
msgpack + zstd) every 10 s at a random phase, for `--seconds`. Prints
accepted batches/s, samples/s, p50/p99 ingest latency and the hub's CPU,
for N = 100, 1,000 and 2,000. Target (issue #3): 2,000 agents with p99
under 100 ms on a 2-core machine. The load generator shares those 2 cores.

    .venv/bin/python -m bench.hub_ingest [--seconds 30] [--agents 100,1000,2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import cpu_seconds, free_port, percentile
from hub.auth import host_token

INTERVAL = 10.0


async def agent(
    i: int,
    url: str,
    secret: bytes,
    cycle: list[dict],
    session: aiohttp.ClientSession,
    until: float,
    latencies: list[float],
    failures: list[int],
) -> None:
    host = f"sim-{i:05d}"
    headers = {
        "Authorization": f"Bearer {host_token(host, secret)}",
        "Content-Encoding": "zstd",
        "Content-Type": "application/msgpack",
    }
    stream, seq = secrets.token_hex(16), 1
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, INTERVAL))
    while loop.time() < until:
        now = time.time()
        records = [dict(r, ts=now) for r in cycle]
        body = protocol.compress(protocol.encode_batch(host, stream, seq, records, "bench", now))
        start = loop.time()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ok = False
        if ok:
            latencies.append(loop.time() - start)
            seq += len(records)
        else:
            failures.append(1)
        await asyncio.sleep(INTERVAL)


async def fleet(n: int, url: str, secret: bytes, cycle: list[dict], seconds: float):
    latencies: list[float] = []
    failures: list[int] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        until = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(
            *(agent(i, url, secret, cycle, session, until, latencies, failures) for i in range(n))
        )
    return latencies, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--agents", default="100,1000,2000")
    args = parser.parse_args()
    cycle = one_cycle_of_records()
    print(
        f"each batch: {len(cycle)} records, every {INTERVAL:.0f} s per agent, "
        f"{args.seconds:.0f} s per run"
    )
    print(
        f"{'agents':>7} {'batches/s':>10} {'samples/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'failed':>7} {'hub CPU %':>10}"
    )
    for n in (int(x) for x in args.agents.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-hub-"))
        port = free_port()
        (tmp / "hub.toml").write_text(f'[hub]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{tmp}"\n')
        hub = subprocess.Popen(
            [sys.executable, "-m", "agent", "hub", "run", "--config", str(tmp / "hub.toml")],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not (tmp / "hub.secret").exists() or not _listening(port):
                if time.monotonic() > deadline:
                    raise SystemExit("the hub did not start")
                time.sleep(0.1)
            secret = (tmp / "hub.secret").read_bytes().strip()
            cpu0, t0 = cpu_seconds(hub.pid), time.monotonic()
            lat, failed = asyncio.run(
                fleet(n, f"http://127.0.0.1:{port}/v1/ingest", secret, cycle, args.seconds)
            )
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(hub.pid) - cpu0
        finally:
            hub.terminate()
            hub.wait(30)
        lat.sort()
        print(
            f"{n:7d} {len(lat) / elapsed:10.1f} {len(lat) * len(cycle) / elapsed:10,.0f}"
            f" {percentile(lat, 0.5) * 1000:8.1f} {percentile(lat, 0.99) * 1000:8.1f}"
            f" {len(failed):7d} {100 * cpu / elapsed:10.0f}"
        )
    return 0


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    raise SystemExit(main())
