"""The hub's HTTP service: `POST /v1/ingest` and the read API.

Ingest order: check the token (before reading the body), read at most
`max_body` bytes, decompress with a limit and validate (in a worker thread:
CPU work off the loop), store durably (in the one store thread), and only
then answer 200 with the stream's high-water mark.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from agent.core import protocol
from hub.auth import token_host
from hub.config import HubConfig
from hub.store import Store

log = structlog.get_logger()


def load_secret(config: HubConfig) -> bytes:
    """The token-signing secret: `secret_file`, or one made on first start
    in the data directory (mode 0600) and kept."""
    path = config.hub.secret_file or config.hub.data_dir / "hub.secret"
    if not path.exists() and config.hub.secret_file is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise ValueError(f"{path}: the hub secret must be at least 16 bytes")
    return secret


def load_read_token(config: HubConfig) -> str | None:
    path = config.hub.read_token_file
    return Path(path).read_text().strip() if path else None


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


class Hub:
    def __init__(self, config: HubConfig, secret: bytes, read_token: str | None) -> None:
        self.config = config
        self.secret = secret
        self.read_token = read_token
        self.store = Store(config.hub.data_dir / "hub.db")
        self.store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.decode_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.hub.max_body)
        app.router.add_post("/v1/ingest", self.ingest)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/v1/hosts", self.hosts)
        app.router.add_get("/v1/metrics", self.metrics)
        app.router.add_get("/v1/events", self.events)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        self.decode_threads.shutdown(wait=True)
        self.store_thread.shutdown(wait=True)  # the last commit finishes first
        self.store.close()

    async def ingest(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        host = token_host(auth[7:], self.secret) if auth.startswith("Bearer ") else None
        if host is None:
            return error(401, "missing or invalid bearer token")
        if (request.content_length or 0) > self.config.hub.max_body:
            return error(413, f"body over {self.config.hub.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body over {self.config.hub.max_body} bytes")
        loop = asyncio.get_running_loop()
        encoding = request.headers.get("Content-Encoding", "identity")
        try:
            batch = await loop.run_in_executor(self.decode_threads, self._decode, body, encoding)
        except protocol.TooLarge as exc:
            return error(413, str(exc))
        except protocol.UnsupportedEncoding as exc:
            return error(415, str(exc))
        except protocol.ProtocolError as exc:
            return error(400, str(exc))
        if batch.host != host:
            log.warning("ingest_wrong_host", token_host=host, batch_host=batch.host)
            return error(403, f"this token is for host {host!r}, not {batch.host!r}")
        last_seq, stored = await loop.run_in_executor(
            self.store_thread, self.store.ingest, batch, time.time()
        )
        return json_response({"last_seq": last_seq, "stored": stored})

    def _decode(self, body: bytes, encoding: str) -> protocol.Batch:
        data = protocol.decompress(body, encoding, self.config.hub.max_decompressed)
        return protocol.decode_batch(data)

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    def _authorized(self, request: web.Request) -> bool:
        if self.read_token is None:  # allowed by config only on loopback
            return True
        given = request.headers.get("Authorization", "")
        return secrets.compare_digest(given, f"Bearer {self.read_token}")

    async def _read(self, request: web.Request, func: Any, *args: Any) -> web.Response:
        if not self._authorized(request):
            return error(401, "the read API needs the read token")
        loop = asyncio.get_running_loop()
        return json_response(await loop.run_in_executor(self.store_thread, func, *args))

    async def hosts(self, request: web.Request) -> web.Response:
        def listing() -> dict[str, Any]:
            return {"hosts": self.store.hosts()}

        return await self._read(request, listing)

    async def metrics(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since, until = float(q.get("since", 0)), float(q.get("until", 1e12))
            limit = int(q.get("limit", 100_000))
        except ValueError:
            return error(400, "since, until and limit must be numbers")

        def series() -> dict[str, Any]:
            return {"series": self.store.metrics(q.get("host"), q.get("name"), since, until, limit)}

        return await self._read(request, series)

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            since, limit = float(q.get("since", 0)), int(q.get("limit", 1000))
        except ValueError:
            return error(400, "since and limit must be numbers")

        def listing() -> dict[str, Any]:
            return {"events": self.store.events(q.get("host"), q.get("kind"), since, limit)}

        return await self._read(request, listing)
