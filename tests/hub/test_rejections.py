"""What `Ingest` counts for the hub's /metrics: refusals by reason
(`Ingest.rejected`) and the seconds each accepted batch took
(`Ingest.latency`), through the real application served on loopback."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import ClientSession, web

from agent.core import protocol
from hub.app import RUNNING, build
from hub.auth import host_token
from hub.config import load
from hub.ingest import REASONS, Latency
from hub.server import app_runner
from tests.hub.test_handlers import SECRET, batch


def test_refusals_are_counted_by_reason_and_accepted_batches_timed(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\ndata_dir = "{tmp_path / "data"}"\nsecret_file = "{tmp_path / "secret"}"\n'
        'max_body = "4KiB"\nretention_raw = "0s"\nmax_series_per_host = 2\n'
    )
    app = build(load(config))
    ingest = app[RUNNING].ingest
    assert dict(ingest.rejected) == dict.fromkeys(REASONS, 0)  # every reason, from the start
    token = host_token("web-01", SECRET)
    armed: list[bool] = []
    seen = ingest.store._seen

    def fails_once_armed(*args: object) -> None:
        if armed:
            armed.pop()
            raise RuntimeError("a bug only this batch meets")
        seen(*args)

    ingest.store._seen = fails_once_armed  # type: ignore[method-assign]

    async def main() -> list[int]:
        runner = app_runner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            sends = [
                (None, protocol.compress(batch(1, 1)), "zstd"),
                ("forged.00", protocol.compress(batch(1, 1)), "zstd"),
                (token, protocol.compress(batch(1, 1, host="db-01")), "zstd"),
                (token, b"\xc1", "identity"),
                (token, protocol.compress(batch(1, 1)), "br"),
                (token, os.urandom(8192), "identity"),
                (token, protocol.compress(batch(1, 1)), "zstd"),
                (token, protocol.compress(batch(2, 1)), "zstd"),
            ]
            statuses = []
            async with ClientSession(f"http://{host}:{port}") as client:
                for auth, body, encoding in sends:
                    headers = {"Content-Encoding": encoding}
                    if auth:
                        headers["Authorization"] = f"Bearer {auth}"
                    async with client.post("/v1/ingest", data=body, headers=headers) as resp:
                        statuses.append(resp.status)
                # a batch that fails in the store on its own: 500, counted, and
                # its retry is stored
                armed.append(True)
                headers = {"Content-Encoding": "zstd", "Authorization": f"Bearer {token}"}
                for _ in range(2):
                    body = protocol.compress(batch(3, 1))
                    async with client.post("/v1/ingest", data=body, headers=headers) as resp:
                        statuses.append(resp.status)
            return statuses
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) == [401, 401, 403, 400, 415, 413, 200, 200, 500, 200]
    assert {k: v for k, v in ingest.rejected.items() if v} == {
        "unauthorized": 2,
        "forbidden": 1,
        "malformed": 1,
        "unsupported_encoding": 1,
        "too_large": 1,
        "store_failed": 1,
    }
    assert ingest.latency.count == 3 and ingest.latency.sum > 0
    assert ingest.latency.cumulative()[-1] == (float("inf"), 3)


def test_latency_buckets_are_cumulative_with_le():
    latency = Latency()
    for seconds in (0.001, 0.005, 0.03, 20.0):
        latency.observe(seconds)
    rows = dict(latency.cumulative())
    assert rows[0.005] == 2  # le: at most
    assert rows[0.01] == 2 and rows[0.05] == 3 and rows[10.0] == 3
    assert rows[float("inf")] == 4 and latency.count == 4
