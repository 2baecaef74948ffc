"""`vigil hub run`: serve until SIGTERM or SIGINT, then finish the request
in hand (its commit included) and exit 0."""

from __future__ import annotations

import asyncio
import signal
import ssl

import structlog
from aiohttp import web

from agent import __version__
from agent.core.configfile import split_host_port
from agent.core.sdnotify import SystemdNotifier
from hub.app import build
from hub.config import HubConfig

log = structlog.get_logger()


def app_runner(app: web.Application) -> web.AppRunner:
    # auto_decompress=False: the hub decompresses itself, with its limits.
    return web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)


async def serve(config: HubConfig) -> int:
    runner = app_runner(build(config))
    await runner.setup()
    host, port = split_host_port(config.hub.listen)
    tls = None
    if config.hub.tls_cert_file is not None and config.hub.tls_key_file is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(config.hub.tls_cert_file, config.hub.tls_key_file)
    await web.TCPSite(runner, host, port, reuse_address=True, ssl_context=tls).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = SystemdNotifier.from_env()
    notifier.send("READY=1", f"STATUS=listening on {config.hub.listen}")
    log.info(
        "hub_listening",
        listen=config.hub.listen,
        data_dir=str(config.hub.data_dir),
        version=__version__,
    )
    await stop.wait()
    notifier.send("STOPPING=1")
    await runner.cleanup()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("hub_stopped")
    notifier.close()
    return 0
