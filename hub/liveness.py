"""Host liveness: a dead man's switch for every host.

A host's status comes from its last batch against the collection interval
it announced (the batch's `interval`; 10 s for agents that do not send it):

    up       heard from within 2 intervals (at least LATE_AFTER_MIN s)
    late     later than that, but within `[hub] silent_after`
    silent   nothing for longer than `silent_after`
    retired  `vigil hub retire HOST`: shown, never alerted on

A host going silent raises the hub alert `HostSilent` (severity high); it
resolves when a batch arrives again, with the gap's length (from the last
batch before the silence to the first after). Both transitions go to the
hub's notifiers and into the store, as an alert event of that host (so
`/v1/alerts` and its history show them) and as its current alert state.

After the hub starts, it raises nothing for `silent_after`: the agents are
reconnecting and a host's last_seen is as old as the hub's downtime. A
HostSilent already firing before the restart is kept as it is (read from
the store), so it is neither announced twice nor forgotten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from agent.core.alert import Alert
from agent.core.worker import Worker
from hub.store import Reader, Store

log = structlog.get_logger()

DEFAULT_INTERVAL = 10.0
LATE_AFTER_MIN = 20.0
SILENT = "HostSilent"


def status_of(host: Mapping[str, Any], now: float, silent_after: float) -> str:
    if host.get("retired"):
        return "retired"
    age = now - host["last_seen"]
    if age > silent_after:
        return "silent"
    if age > max(2 * (host.get("interval") or DEFAULT_INTERVAL), LATE_AFTER_MIN):
        return "late"
    return "up"


class Liveness:
    """Checks every host every `tick` seconds through `read` (a read
    thread's reader); transitions are written by the store thread."""

    def __init__(
        self,
        store: Store,
        store_thread: Worker,
        read: Callable[[Callable[[Reader], Any]], Awaitable[Any]],
        silent_after: float,
        notify: Callable[[Alert], Awaitable[None]],
    ) -> None:
        self.store = store
        self.store_thread = store_thread
        self.silent_after = silent_after
        self.notify = notify
        self.read = read
        self.firing: dict[str, float] = {}  # host -> last_seen when it went silent
        self.revoked: set[str] = set()  # hosts whose token ingest refuses
        self.tick = max(0.5, min(5.0, silent_after / 6))

    @staticmethod
    def _firing(reader: Reader) -> dict[str, float]:
        return {
            a["host"]: float(a["labels"].get("last_seen", 0) or 0)
            for a in reader.alerts()
            if a["name"] == SILENT and a["state"] == "firing"
        }

    async def run(self) -> None:
        started, loaded = time.time(), False
        while True:
            try:  # logged; the next tick tries again
                # hubs sharing a store: one of them raises HostSilent (Store.lead)
                leading = await asyncio.to_thread(self.store.lead, "liveness")
                if leading and not loaded:  # what was firing before (a restart, or
                    self.firing = await self.read(self._firing)  # another hub) stays so
                loaded = leading
                armed = time.time() - started >= self.silent_after
                await self.check(time.time(), armed, leading)
            except Exception as exc:
                log.error("liveness_check_failed", error=repr(exc)[:300])
            await asyncio.sleep(self.tick)

    async def check(self, now: float, armed: bool, leading: bool = True) -> None:
        hosts = await self.read(lambda r: r.hosts())
        self.revoked = {h["id"] for h in hosts if h["revoked"]}
        if not leading:  # another hub on the shared store raises them
            return
        for host in hosts:
            name, status = host["id"], status_of(host, now, self.silent_after)
            if name in self.firing and status in ("up", "late", "retired"):
                gap = host["last_seen"] - self.firing.pop(name)
                await self._transition(host, "resolved", now, gap)
            elif name not in self.firing and status == "silent" and armed:
                self.firing[name] = host["last_seen"]
                await self._transition(host, "firing", now, now - host["last_seen"])

    async def _transition(
        self, host: Mapping[str, Any], state: str, now: float, gap: float
    ) -> None:
        name = host["id"]
        if state == "firing":
            summary = f"{name} has sent nothing for {gap:.0f} s"
        else:
            summary = f"{name} is back after a gap of {gap:.0f} s"
        labels = {"alertname": SILENT, "host": name, "severity": "high"}
        alert = Alert(
            rule=SILENT,
            state="firing" if state == "firing" else "resolved",
            severity="high",
            labels=labels,
            summary=summary,
            value=gap,
            starts_at=host["last_seen"] if state == "firing" else now - gap,
            ends_at=None if state == "firing" else now,
            host=name,
            fingerprint=f"hub:{SILENT}:{name}",
        )
        log.warning("host_silent" if state == "firing" else "host_back", host=name, gap=gap)
        await self.store_thread.run(
            self.store.hub_alert,
            name,
            SILENT,
            state,
            "high",
            host["last_seen"],
            summary,
            {**labels, "last_seen": str(host["last_seen"]), "gap_seconds": f"{gap:.0f}"},
            now,
        )
        await self.notify(alert)
