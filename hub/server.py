"""`vigil hub run`: serve until SIGTERM or SIGINT, then finish the request
in hand (its commit included) and exit 0. SIGHUP reads the configuration
again (hub/reload.py).

The hub listens itself (`loop.create_server`) rather than through aiohttp's
TCPSite, so that every connection goes through the guard (hub/guard.py):
its clocks, the connection cap and the 503 when full."""

from __future__ import annotations

import asyncio
import signal
import ssl

import structlog
from aiohttp import web

from agent import __version__
from agent.core.configfile import split_host_port
from agent.core.sdnotify import SystemdNotifier
from hub.app import GUARD, RUNNING, build
from hub.config import HubConfig
from hub.guard import Guard, raise_fd_limit
from hub.reload import reload, server_tls

log = structlog.get_logger()


def app_runner(app: web.Application) -> web.AppRunner:
    # auto_decompress=False: the hub decompresses itself, with its limits.
    return web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)


async def listen(
    runner: web.AppRunner, guard: Guard, address: str, tls: ssl.SSLContext | None
) -> asyncio.Server:
    """Serve `runner`'s app on `address` ("HOST:PORT"), each connection guarded."""
    assert runner.server is not None, "runner.setup() first"
    host, port = split_host_port(address)
    return await asyncio.get_running_loop().create_server(
        guard.factory(runner.server),
        host,
        port,
        ssl=tls,
        reuse_address=True,
        backlog=1024,
        ssl_handshake_timeout=guard.header_timeout if tls else None,
    )


async def serve(config: HubConfig, path: str | None = None) -> int:
    """Serve `config` (read from `path`: SIGHUP reads it again)."""
    raise_fd_limit(config.hub.max_connections)
    app = build(config)
    runner = app_runner(app)
    await runner.setup()
    tls = None
    if config.hub.tls_cert_file is not None and config.hub.tls_key_file is not None:
        tls = server_tls(config.hub.tls_cert_file, config.hub.tls_key_file)
    server = await listen(runner, app[GUARD], config.hub.listen, tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = SystemdNotifier.from_env()
    reloading: asyncio.Task[None] | None = None
    again = False  # a SIGHUP came during a reload: the file may have changed since

    async def reloads() -> None:
        nonlocal again
        while again:
            again = False
            await reload(app[RUNNING], path, notifier)

    def request_reload() -> None:
        nonlocal reloading, again
        again = True
        if reloading is None or reloading.done():  # one at a time, the last HUP's file read
            reloading = asyncio.create_task(reloads())

    loop.add_signal_handler(signal.SIGHUP, request_reload)
    notifier.send("READY=1", f"STATUS=listening on {config.hub.listen}")
    log.info(
        "hub_listening",
        listen=config.hub.listen,
        data_dir=str(config.hub.data_dir),
        version=__version__,
    )
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    if reloading is not None:
        await reloading  # a reload is quick: the file and two small files
    notifier.send("STOPPING=1")
    server.close()  # no new connections; runner.cleanup finishes the ones open
    await runner.cleanup()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("hub_stopped")
    notifier.close()
    return 0
