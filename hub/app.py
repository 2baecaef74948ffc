"""The hub's HTTP application: the store, the threads it runs in, the
routes of ingest (hub/ingest.py) and the read API (hub/read.py), and the
guard on connections and bodies in flight (hub/guard.py)."""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from aiohttp import web

from agent.core.alert import Alert
from agent.core.worker import Worker
from agent.notifiers.routing import build_notifiers, route
from hub import datadir
from hub.auth import load_keys, load_read_token
from hub.config import HubConfig
from hub.fleet import Family, own_figures
from hub.guard import Counts, Guard, InFlight
from hub.health import Health
from hub.ingest import Ingest
from hub.liveness import Liveness, status_of
from hub.read import Read
from hub.reload import Running
from hub.reports import http as reports_http
from hub.reports.schedule import Schedule
from hub.store import Limits, Store
from hub.store.configured import open_configured
from hub.web import Web

log = structlog.get_logger()
RETENTION: web.AppKey[asyncio.Task[None]] = web.AppKey("retention", asyncio.Task)
LIVENESS: web.AppKey[asyncio.Task[None]] = web.AppKey("liveness", asyncio.Task)
REPORTS: web.AppKey[asyncio.Task[None]] = web.AppKey("reports", asyncio.Task)
FORWARDS: web.AppKey[list[asyncio.Task[None]]] = web.AppKey("forwards", list)
EXPIRE_CHUNK = 5000  # rows per transaction: ingest waits for one chunk at most

GUARD = web.AppKey("guard", Guard)
RUNNING = web.AppKey("running", Running)  # what SIGHUP reaches (hub/reload.py)


def build(config: HubConfig) -> web.Application:
    """The application for `config`. Raises OSError or ValueError for an
    unreadable secret, read token or database, before anything listens. A
    damaged database is set aside and replaced (hub/store/sqlite.py)."""
    datadir.prepare(config.hub.data_dir)  # private: it holds the fleet's log lines
    keys, read_token = load_keys(config, time.time()), load_read_token(config)
    store = open_configured(config)  # [store]: SQLite in data_dir, or PostgreSQL
    hub = config.hub
    store.limits = Limits(
        hub.max_series_per_host, hub.max_new_series_per_batch, hub.max_clock_skew, hub.retention_raw
    )
    # One store thread: the store is not thread-safe, and it serializes writes.
    # Reads have their own threads and connections (hub/read.py).
    store_thread = Worker("store")
    decode_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
    counts = Counts()
    guard = Guard(hub.max_connections, hub.header_timeout, hub.idle_timeout, counts)
    inflight = InFlight(
        hub.max_inflight_bodies, hub.max_inflight_per_host, counts, hub.max_inflight_bytes
    )
    ingest = Ingest(
        keys,
        store,
        store_thread,
        decode_threads,
        config.hub.max_body,
        config.hub.max_decompressed,
        inflight,
        hub.body_timeout,
    )
    notifiers = build_notifiers(hub.notifiers, hub.data_dir, "hub")

    async def notify(alert: Alert) -> None:
        """The hub's alerts go to every hub notifier, and the journal."""
        for notifier in route(alert, list(notifiers), notifiers):
            await notifier.send(alert)

    # Forwarding (hub/forward): loaded only when a forward is configured
    forwarders: list[Any] = []
    if hub.forward:
        from hub.forward import forwarders as make_forwarders

        forwarders = list(make_forwarders(hub.forward, store, store_thread))

    def own() -> dict[str, Family]:
        return own_figures(ingest, counts, hub.data_dir / "hub.db", forwarders)

    read = Read(
        read_token,
        store.reader,
        config.hub.read_threads,
        config.hub.max_read_points,
        config.hub.max_read_events,
        lambda host: status_of(host, time.time(), hub.silent_after),
        own,
    )
    liveness = Liveness(store, store_thread, read.query, hub.silent_after, notify)
    ingest.revoked = lambda host: host in liveness.revoked
    health = Health(store, store_thread)

    def close() -> None:
        read.close()
        decode_threads.shutdown(wait=True)
        store_thread.shutdown(wait=True)  # the last commit finishes first
        store.close()

    async def start_tasks(app: web.Application) -> None:
        for notifier in notifiers.values():
            await notifier.start()
        app[LIVENESS] = asyncio.create_task(liveness.run())
        schedule = Schedule(
            lambda: app[RUNNING].config.hub.reports,
            hub.data_dir,
            read.query,
            notifiers,
            lambda: asyncio.to_thread(store.lead, "reports"),
        )
        app[REPORTS] = asyncio.create_task(schedule.run())
        retention = (hub.retention_raw, hub.retention_events, hub.retention_rollup)
        app[RETENTION] = asyncio.create_task(expire(store, store_thread, *retention))
        app[FORWARDS] = [asyncio.create_task(f.run()) for f in forwarders]

    def retention_changed(raw: float, events: float, rollups: float) -> None:  # on reload
        if RETENTION in app:
            app[RETENTION].cancel()
            del app[RETENTION]
        app[RETENTION] = asyncio.create_task(expire(store, store_thread, raw, events, rollups))

    async def cleanup(app: web.Application) -> None:
        for key in (RETENTION, LIVENESS, REPORTS):
            if key in app:
                app[key].cancel()
        forwarding = app.get(FORWARDS, [])
        for task in forwarding:
            task.cancel()
        # their cursor commits run on the store thread: done before it stops
        await asyncio.gather(*forwarding, return_exceptions=True)
        for notifier in notifiers.values():
            await notifier.stop()
        await asyncio.to_thread(close)  # waiting for threads would block the loop

    app = web.Application(client_max_size=config.hub.max_body, middlewares=[guard.middleware])
    app[GUARD] = guard
    app[RUNNING] = Running(config, guard, inflight, ingest, read, store, retention_changed)
    app.router.add_post("/v1/ingest", ingest.handle)
    app.router.add_get("/healthz", health.handle)
    app.router.add_get("/v1/hosts", read.hosts)
    app.router.add_get("/v1/metrics", read.metrics)
    app.router.add_get("/v1/events", read.events)
    app.router.add_get("/v1/alerts", read.alerts)
    app.router.add_get("/metrics", read.prometheus)
    app.router.add_get(
        "/v1/reports/daily", reports_http.handler(read, lambda: app[RUNNING].config.hub.reports)
    )
    # the web page (hub/web): same guard as the read API, or the login cookie
    target = lambda: app[RUNNING].config.hub.reports.availability_target  # noqa: E731 - reloads
    Web(read, target, secure=hub.tls_cert_file is not None).add_routes(app)
    app.on_startup.append(start_tasks)
    app.on_cleanup.append(cleanup)
    return app


async def expire(
    store: Store,
    store_thread: Worker,
    retention: float,
    events: float = 0.0,
    rollups: float = 0.0,
) -> None:
    """Delete raw points older than `retention`, events older than `events`
    and rollups older than `rollups` (0: keep for ever), every few minutes,
    a chunk at a time on the store thread so ingest interleaves. Runs even
    when everything is kept: an older database's rollups are backfilled by
    it. The first pass waits a minute: a fleet reconnecting after a hub
    restart comes first."""
    shortest = min((r for r in (retention, events, rollups) if r), default=6000.0)
    every = min(600.0, max(1.0, shortest / 10))
    await asyncio.sleep(min(60.0, every))
    while True:
        if not await asyncio.to_thread(store.lead, "retention"):  # another hub expires
            await asyncio.sleep(every)
            continue
        now, gone = time.time(), 0
        before, *cutoffs = (now - r if r else -math.inf for r in (retention, events, rollups))
        try:
            while (n := await store_thread.run(store.expire, before, EXPIRE_CHUNK, *cutoffs)) > 0:
                gone += n
                if n < EXPIRE_CHUNK:
                    break
        except Exception as exc:
            log.error("retention_failed", error=repr(exc)[:300])
        if gone:
            log.info("retention_expired", rows=gone, before=before)
        await asyncio.sleep(every)
