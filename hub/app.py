"""The hub's HTTP application: the store, the threads it runs in, the
routes of ingest (hub/ingest.py) and the read API (hub/read.py), and the
guard on connections and bodies in flight (hub/guard.py)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from agent.core.worker import Worker
from hub.auth import load_read_token, load_secret
from hub.config import HubConfig
from hub.guard import Counts, Guard, InFlight
from hub.ingest import Ingest
from hub.read import Read
from hub.store.sqlite import SQLiteStore

GUARD = web.AppKey("guard", Guard)


def build(config: HubConfig) -> web.Application:
    """The application for `config`. Raises OSError or ValueError for an
    unreadable secret or read token, before anything listens."""
    secret, read_token = load_secret(config), load_read_token(config)
    store = SQLiteStore(config.hub.data_dir / "hub.db")
    # One store thread: the store is not thread-safe, and it serializes writes.
    store_thread = Worker("store")
    decode_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
    hub = config.hub
    counts = Counts()
    guard = Guard(hub.max_connections, hub.header_timeout, hub.idle_timeout, counts)
    inflight = InFlight(hub.max_inflight_bodies, hub.max_inflight_per_host, counts)
    ingest = Ingest(
        secret,
        store,
        store_thread,
        decode_threads,
        config.hub.max_body,
        config.hub.max_decompressed,
        inflight,
        hub.body_timeout,
    )
    read = Read(read_token, store, store_thread)

    def close() -> None:
        decode_threads.shutdown(wait=True)
        store_thread.shutdown(wait=True)  # the last commit finishes first
        store.close()

    async def cleanup(app: web.Application) -> None:
        await asyncio.to_thread(close)  # waiting for threads would block the loop

    app = web.Application(client_max_size=config.hub.max_body, middlewares=[guard.middleware])
    app[GUARD] = guard
    app.router.add_post("/v1/ingest", ingest.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/hosts", read.hosts)
    app.router.add_get("/v1/metrics", read.metrics)
    app.router.add_get("/v1/events", read.events)
    app.on_cleanup.append(cleanup)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
