"""The hub's HTTP handlers (hub/ingest.py, hub/read.py) through the real
application (hub/app.py) served on loopback, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp import ClientSession, web

from agent.core import protocol
from hub.app import build
from hub.auth import host_token
from hub.config import load
from hub.server import app_runner

STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
T0 = float(int(time.time()))  # records within the retention window
SECRET = b"a test secret of the hub, 32 b."
READ = "read-token-for-tests"
GOLDEN = Path(__file__).parents[1] / "fixtures" / "protocol"

Scenario = Callable[[ClientSession], Awaitable[None]]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    (tmp_path / "read").write_text(READ + "\n")
    path = tmp_path / "hub.toml"
    path.write_text(
        f'[hub]\ndata_dir = "{tmp_path / "data"}"\nsecret_file = "{tmp_path / "secret"}"\n'
        f'read_token_file = "{tmp_path / "read"}"\nmax_body = "4KiB"\n'
        'max_decompressed = "64KiB"\n'
        'retention_raw = "0s"\n'  # the golden batch's records are from 2026-01-01
        'retention_events = "0s"\n'
    )
    return path


def serve(config: Path, scenario: Scenario) -> None:
    """Run `scenario` against the hub built from `config`, served as
    `vigil hub run` serves it, on a loopback port. Built before the loop
    runs: loading the secret is file I/O."""
    app = build(load(config))

    async def main() -> None:
        runner = app_runner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            host, port = runner.addresses[0][:2]
            async with ClientSession(f"http://{host}:{port}") as client:
                await scenario(client)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def batch(first: int, n: int, host: str = "web-01", **record: Any) -> bytes:
    recs = [
        {"kind": "metric", "name": "m", "labels": {}, "value": first + i, "ts": T0 + first + i}
        | record
        for i in range(n)
    ]
    return protocol.encode_batch(host, STREAM, first, recs, "0.1.0", T0)


def headers(host: str | None = "web-01", encoding: str = "zstd") -> dict[str, str]:
    out = {"Content-Encoding": encoding, "Content-Type": "application/msgpack"}
    if host:
        out["Authorization"] = f"Bearer {host_token(host, SECRET)}"
    return out


async def post(
    client: ClientSession, body: bytes | Any, encoding: str = "zstd", **kw: Any
) -> tuple[int, dict[str, Any]]:
    if isinstance(body, bytes):
        body = protocol.compress(body, encoding)
    kw.setdefault("headers", headers(encoding=encoding))
    async with client.post("/v1/ingest", data=body, **kw) as resp:
        return resp.status, json.loads(await resp.text())


async def get(client: ClientSession, path: str, token: str | None = READ) -> tuple[int, Any]:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.get(path, headers=auth) as resp:
        # strict JSON: a browser's JSON.parse refuses NaN and Infinity
        return resp.status, json.loads(await resp.text(), parse_constant=_refuse)


def _refuse(constant: str) -> None:
    raise AssertionError(f"{constant} in a JSON answer")


def test_ingest_answers_the_mark_after_storing_and_replays_are_idempotent(config):
    async def scenario(client: ClientSession) -> None:
        golden = (GOLDEN / "batch-v1.msgpack.zst").read_bytes()
        assert await post(client, golden, "identity", headers=headers()) == (
            200,
            {"last_seq": 43, "stored": 3},
        )
        assert await post(client, golden, "identity", headers=headers()) == (
            200,
            {"last_seq": 43, "stored": 0},
        )
        assert await post(client, batch(42, 4), "gzip") == (200, {"last_seq": 45, "stored": 2})
        assert await post(client, batch(42, 4), "identity") == (200, {"last_seq": 45, "stored": 0})
        assert await post(client, batch(50, 1)) == (200, {"last_seq": 50, "stored": 1})
        status, body = await get(client, "/v1/metrics?host=web-01&name=m")
        assert status == 200
        assert body["series"][0]["points"] == [[T0 + s, s] for s in (44, 45, 50)]

    serve(config, scenario)


def test_ingest_refuses_what_it_must_and_stores_nothing_of_it(config):
    async def scenario(client: ClientSession) -> None:
        good = batch(1, 2)
        mac = host_token("web-01", SECRET).rpartition(".")[2]
        assert (await post(client, good, headers=headers(None)))[0] == 401
        for auth in ("Bearer web-01.00ff", f"Bearer web-02.{mac}", f"Basic web-01.{mac}"):
            forged = headers(None) | {"Authorization": auth}
            status, body = await post(client, good, headers=forged)
            assert (status, body) == (401, {"error": "missing or invalid bearer token"})
        status, body = await post(client, good, headers=headers("web-02"))
        assert status == 403 and "web-02" in body["error"]

        assert (await post(client, b"\xc1\xc1", "identity"))[0] == 400
        assert (await post(client, b"\x93\x01\x02\x03"))[0] == 400  # msgpack, not a batch
        cut = protocol.compress(good)[:-4]
        assert (await post(client, cut, headers=headers()))[0] == 400
        status, body = await post(client, batch(1, 1, value="high"))
        assert status == 400 and body["error"] == "records[0]: value must be a number"
        wrong_count = msgpack.packb(msgpack.unpackb(good) | {"last": 9})
        assert (await post(client, wrong_count))[0] == 400

        assert (await post(client, good, headers=headers(encoding="br")))[0] == 415

        big = bytes(range(256)) * 20  # over max_body (4 KiB) as sent
        status, body = await post(client, big, "identity")
        assert status == 413 and "4096" in body["error"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length to go by
            for _ in range(10):
                yield b"\0" * 1024

        assert (await post(client, chunks(), "identity"))[0] == 413
        bomb = protocol.encode_batch(
            "web-01",
            STREAM,
            1,
            [{"kind": "event", "type": "log", "ts": T0, "x": "a" * 100_000}],
            "0.1.0",
            T0,
        )
        status, body = await post(client, bomb)  # small compressed, over 64 KiB expanded
        assert status == 413 and "expands" in body["error"]

        assert await get(client, "/v1/hosts") == (200, {"hosts": []})
        assert await post(client, good) == (200, {"last_seq": 2, "stored": 2})  # still serving

    serve(config, scenario)


def test_read_api_needs_its_token_and_answers_strict_json(config):
    async def scenario(client: ClientSession) -> None:
        await post(client, batch(1, 2, labels={"mount": "/données"}))
        await post(client, batch(3, 1, value=float("nan")))
        event = {"kind": "event", "type": "security", "ts": T0 + 9, "remote": "203.0.113.9"}
        await post(
            client,
            protocol.encode_batch("db-01", STREAM, 1, [event], "0.2.0", T0),
            headers=headers("db-01"),
        )
        for path in ("/v1/hosts", "/v1/metrics", "/v1/events"):
            for token in (None, "wrong"):
                status, body = await get(client, path, token)
                assert (status, body) == (401, {"error": "the read API needs the read token"})

        status, body = await get(client, "/v1/hosts")
        assert status == 200
        assert [(h["id"], h["agent_version"], h["streams"]) for h in body["hosts"]] == [
            ("db-01", "0.2.0", [{"stream": STREAM, "last_seq": 1, "lost": 0}]),
            ("web-01", "0.1.0", [{"stream": STREAM, "last_seq": 3, "lost": 0}]),
        ]
        status, body = await get(client, f"/v1/metrics?name=m&since={T0 + 2}&until={T0 + 3}")
        assert body["series"] == [
            {
                "host": "web-01",
                "name": "m",
                "labels": {"mount": "/données"},
                "points": [[T0 + 2, 2.0]],
            },
            {"host": "web-01", "name": "m", "labels": {}, "points": [[T0 + 3, None]]},
        ]
        status, body = await get(client, "/v1/events?kind=security&host=db-01")
        assert body == {
            "events": [
                {
                    "kind": "security",
                    "type": "security",
                    "ts": T0 + 9,
                    "remote": "203.0.113.9",
                    "host": "db-01",
                }
            ],
            "next": None,
        }
        assert (await get(client, "/v1/metrics?limit=1"))[1]["series"][0]["points"] == [
            [T0 + 1, 1.0]
        ]
        assert await get(client, "/v1/metrics?since=yesterday") == (
            400,
            {"error": "since must be a finite number (Unix seconds), not 'yesterday'"},
        )
        assert (await get(client, "/v1/events?limit=ten"))[0] == 400
        assert await get(client, "/healthz", None) == (200, {"status": "ok"})

    serve(config, scenario)


def test_reads_come_in_capped_pages_that_add_up_to_everything(config):
    """`limit` is 1..the maximum (400 beyond, naming it); `next` leads
    through every point and event exactly once, while ingest goes on."""
    config.write_text(config.read_text() + "max_read_points = 7\nmax_read_events = 3\n")

    async def scenario(client: ClientSession) -> None:
        await post(client, batch(1, 10))
        await post(client, batch(1, 5, host="db-01"), headers=headers("db-01"))
        events = [{"kind": "event", "type": "log", "ts": T0 + i % 4, "n": i} for i in range(8)]
        await post(
            client,
            protocol.encode_batch("web-01", "e" * 32, 1, events, "0.1.0", T0),
        )
        for query, message in [
            ("limit=-1", "limit must be an integer from 1 to 7, not '-1'"),
            ("limit=0", "limit must be an integer from 1 to 7, not '0'"),
            ("limit=1.5", "limit must be an integer from 1 to 7, not '1.5'"),
            ("limit=8", "limit is over the maximum of 7 points per page;"),
            (f"limit={10**12}", "limit is over the maximum of 7 points per page;"),
            (f"limit={10**33}", "limit is over the maximum of 7 points per page;"),
            ("limit=" + "9" * 5000, "limit is over the maximum of 7 points per page;"),
            ("since=nan", "since must be a finite number (Unix seconds), not 'nan'"),
            ("until=inf", "until must be a finite number (Unix seconds), not 'inf'"),
            ("since=1e400", "since must be a finite number (Unix seconds), not '1e400'"),
            ("cursor=", "cursor: not a cursor of this hub"),
            ("cursor=bm90IGEgY3Vyc29y", "cursor: not a cursor of this hub"),
            ("cursor=WyJhIiwiYiIsMSwxZTk5OV0", "cursor: not a cursor of this hub"),
            ("cursor=" + "A" * 2000, "cursor: not a cursor of this hub"),
        ]:
            status, body = await get(client, "/v1/metrics?" + query)
            assert status == 400 and body["error"].startswith(message), (query, body)
        status, body = await get(client, "/v1/events?limit=4")
        assert status == 400 and "maximum of 3 events" in body["error"]

        points, pages, cursor = [], 0, ""
        while True:
            status, body = await get(client, "/v1/metrics?name=m" + cursor)
            assert status == 200 and sum(len(s["points"]) for s in body["series"]) <= 7
            points += [(s["host"], p[0] - T0) for s in body["series"] for p in s["points"]]
            pages += 1
            if pages == 1:  # a write between pages moves nothing already read
                await post(client, batch(11, 1))
            if body["next"] is None:
                break
            cursor = "&cursor=" + body["next"]
        assert points == [("db-01", t) for t in range(1, 6)] + [("web-01", t) for t in range(1, 12)]
        assert pages == 3

        seen, cursor = [], ""
        while True:
            status, body = await get(client, "/v1/events?host=web-01" + cursor)
            assert status == 200 and len(body["events"]) <= 3
            seen += [(e["ts"] - T0, e["n"]) for e in body["events"]]
            if body["next"] is None:
                break
            cursor = "&cursor=" + body["next"]
        assert seen == sorted(((i % 4, i) for i in range(8)), reverse=True)  # newest first
        assert (await get(client, "/v1/events?limit=2&kind=log&since=" + str(T0 + 3)))[1][
            "events"
        ] == [
            {"kind": "log", "type": "log", "ts": T0 + 3, "n": 7, "host": "web-01"},
            {"kind": "log", "type": "log", "ts": T0 + 3, "n": 3, "host": "web-01"},
        ]

    serve(config, scenario)
