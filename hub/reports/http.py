"""`GET /v1/reports/daily?date=YYYY-MM-DD[&format=json|md|html]`: the daily
report, guarded by the read token like the read API and built on its read
threads (hub/read.py). No date: yesterday in the report's time zone. A
bad date or format is a 400 naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from hub.auth import may_read
from hub.config import ReportsSection
from hub.read import Read
from hub.store import Reader

log = structlog.get_logger()
Handler = Callable[[web.Request], Any]


def handler(read: Read, config: Callable[[], ReportsSection]) -> Handler:
    """The route's handler; `config` gives the running [hub.reports]."""

    async def daily_report(request: web.Request) -> web.Response:
        if not may_read(request, read.read_token):
            if read.read_token is None:
                message = "reports without a read token answer local requests only"
                return web.json_response({"error": message}, status=403)
            return web.json_response({"error": "the read API needs the read token"}, status=401)
        # imported on the first report: the idle hub does not carry the report code
        from hub.reports.daily import daily
        from hub.reports.days import BadDate, parse_date, yesterday, zone
        from hub.reports.render import CONTENT_TYPES, FORMATS, render

        cfg = config()
        tz = zone(cfg.timezone)
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            message = f"format must be one of {', '.join(FORMATS)}, not {fmt[:40]!r}"
            return web.json_response({"error": message}, status=400)
        text = request.query.get("date")
        try:
            day = yesterday(tz) if text is None else parse_date(text)
        except BadDate as exc:
            return web.json_response({"error": str(exc)}, status=400)
        target, now = cfg.availability_target, time.time()

        def build(reader: Reader) -> str:
            return render(daily(reader, day, tz, target, now), fmt)

        try:
            body = await read.query(build)
        except Exception as exc:  # the store's fault, not the client's: logged, said
            log.error("report_failed", date=day.isoformat(), error=repr(exc)[:300])
            return web.json_response({"error": "the report failed; see the hub's log"}, status=500)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPES[fmt]})

    return daily_report
