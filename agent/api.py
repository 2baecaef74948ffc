"""The agent's local endpoint: GET /metrics (Prometheus text),
GET /status (JSON, what `vigil status` prints) and GET /alerts/test?rule=NAME
(why a rule would or would not fire now, for `vigil alerts test`). Off unless `[api] listen`
is set. aiohttp is imported only when it is, to keep the default
footprint small."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog

from agent.core.configfile import split_host_port
from agent.core.exposition import CONTENT_TYPE

log = structlog.get_logger()


class ApiServer:
    def __init__(
        self,
        listen: str,
        metrics: Callable[[], str],
        status: Callable[[], dict[str, Any]],
        explain: Callable[[str], dict[str, Any] | None] | None = None,
    ):
        self.listen = listen
        self.metrics = metrics
        self.status = status
        self.explain = explain
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def get_metrics(request: web.Request) -> web.Response:
            body = self.metrics().encode()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        async def get_status(request: web.Request) -> web.Response:
            return web.Response(text=json.dumps(self.status()), content_type="application/json")

        async def get_alert_test(request: web.Request) -> web.Response:
            found = self.explain(request.query.get("rule", "")) if self.explain else None
            if found is None:
                return web.json_response({"error": "no such rule"}, status=404)
            return web.Response(text=json.dumps(found), content_type="application/json")

        app = web.Application()
        app.router.add_get("/metrics", get_metrics)
        app.router.add_get("/status", get_status)
        app.router.add_get("/alerts/test", get_alert_test)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = split_host_port(self.listen)
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("api_listening", listen=self.listen)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
