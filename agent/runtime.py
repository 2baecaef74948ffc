"""The agent daemon (`vigil run`): collectors under supervision, signals,
reload, the systemd notify protocol and the local endpoint.

Lifecycle: lock the state directory (before the loop starts), start one
Schedule per collector, wait for each collector's first attempt, then
READY=1. SIGHUP re-reads the
config: a bad one is logged and the running one kept; a good one replaces
the collectors (their counters in CollectorStats carry over). SIGTERM or
SIGINT: STOPPING=1, cancel everything within `stop_timeout`, exit 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from agent import __version__
from agent import config as config_mod
from agent.alerts.service import SPECS as ALERTING_SPECS
from agent.alerts.service import Alerting
from agent.api import ApiServer
from agent.config import Config
from agent.core import logsetup, statedir
from agent.core.atomic import write_snapshot
from agent.core.checkpoint import CheckpointStore
from agent.core.records import Event, Metric, Record
from agent.core.schema import ConfigError
from agent.core.sdnotify import SystemdNotifier
from agent.exposition import render
from agent.scheduler import CollectorStats, Schedule
from agent.selfmetrics import SelfCollector
from agent.shipper import SPECS as SHIPPER_SPECS
from agent.shipper import Shipper, read_token
from collectors import HOST_COLLECTORS
from collectors.base import Collector, Spec
from collectors.checks.runner import HARD_STOP
from collectors.checks.service import SAVE_EVERY as CHECKS_SAVE_EVERY
from collectors.checks.service import SPECS as CHECK_SPECS
from collectors.checks.service import Checks, phase_of
from collectors.logs.tailer import LogCollector
from collectors.procfs import default_source
from collectors.source import HostSource

log = structlog.get_logger()


def build_collectors(config: Config, source: HostSource) -> list[Collector]:
    """The host collectors `[host] enabled` asks for, with their options."""
    out: list[Collector] = []
    for name in config.host.enabled:
        cls: Any = HOST_COLLECTORS[name]
        options = config.host.options.get(name)
        out.append(cls(source) if options is None else cls(source, options))
    return out


async def collect_once(config: Config, window: float) -> tuple[list[Record], dict[str, str]]:
    """Every enabled host collector twice, `window` apart (rates and CPU
    shares need two samples), under the daemon's timeouts and error handling.
    Returns the records of the second pass and the errors by collector."""
    source = default_source(str(config.host.procfs), str(config.host.sysfs))
    latest: dict[str, Sequence[Record]] = {}
    schedules = [
        Schedule(
            c,
            interval=window,
            timeout=config.agent.collect_timeout or max(config.interval_for(c.name), 1.0),
            jitter=0.0,
            sink=latest.__setitem__,
            stats=CollectorStats(),
        )
        for c in build_collectors(config, source)
    ]
    for attempt in range(2):
        latest.clear()
        started = time.monotonic()
        await asyncio.gather(*(s.run_once() for s in schedules if not s.stuck))
        if attempt == 0:
            await asyncio.sleep(max(0.0, window - (time.monotonic() - started)))
    records = [r for s in schedules for r in latest.get(s.name, ())]
    errors = {s.name: s.stats.last_error or "" for s in schedules if s.name not in latest}
    return records, errors


class Agent:
    def __init__(self, config: Config, config_path: str | None, source: HostSource | None = None):
        self.config = config
        self.config_path = config_path
        self.source = source or default_source(str(config.host.procfs), str(config.host.sysfs))
        self.started = time.time()
        self.stats: dict[str, CollectorStats] = {}
        self.latest: dict[str, Sequence[Record]] = {}
        self.specs: dict[str, Spec] = {}
        self.phases: dict[float, float] = {}  # interval -> this agent's random grid offset
        self.schedules: list[Schedule] = []
        self._retired: list[Schedule] = []  # replaced by a reload while a thread was stuck
        self.tasks: list[asyncio.Task[None]] = []
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="collector")
        self.notifier = SystemdNotifier(None)
        self.api: ApiServer | None = None
        self.lock = statedir.StateLock(config.agent.state_dir)
        self.shipper: Shipper | None = None
        self.logs: LogCollector | None = None
        self.checks: Checks | None = None
        self.alerting: Alerting | None = None
        self._token: str | None = None
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    def prepare(self) -> None:
        """Before the loop starts, as it blocks: create and lock the state
        directory, read the hub token."""
        statedir.prepare(self.config.agent.state_dir)
        self.lock.acquire()
        if self.config.hub.url:
            self._token = read_token(self.config)

    async def run(self) -> int:
        """Run until SIGTERM or SIGINT; `prepare()` first."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.notifier = SystemdNotifier.from_env()
        log.info(
            "agent_starting",
            version=__version__,
            pid=os.getpid(),
            config=self.config.source,
            host_id=self.config.agent.host_id,
            state_dir=str(self.config.agent.state_dir),
        )
        await self.start_shipper()
        await self.start_alerting()
        await self.start_collectors()
        await self.start_api()
        stopping = asyncio.create_task(self._stop.wait())
        # A stop request during start-up must not wait for slow first runs.
        await asyncio.wait(
            [asyncio.create_task(self.first_round()), stopping], return_when=asyncio.FIRST_COMPLETED
        )
        watchdog = None
        if not stopping.done():
            self.notifier.send("READY=1", f"STATUS={self.status_line()}")
            log.info("agent_ready", collectors=[s.name for s in self.schedules])
            watchdog = asyncio.create_task(self.watchdog())
        await stopping
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        if watchdog is not None:
            watchdog.cancel()
        try:
            await asyncio.wait_for(self.shutdown(), self.config.agent.stop_timeout)
        except asyncio.TimeoutError:
            log.warning("stop_deadline_passed", stop_timeout=self.config.agent.stop_timeout)
        log.info("agent_stopped")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        self.lock.release()
        self.notifier.close()
        return 0

    @property
    def stuck_threads(self) -> bool:
        """True when a collector thread is still blocked (it would hold up interpreter exit)."""
        return any(s.stuck for s in self.schedules + self._retired)

    def request_stop(self, sig: signal.Signals) -> None:
        log.info("stop_requested", signal=sig.name)
        self._stop.set()

    def request_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self.reload())

    async def shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.agent.stop_timeout * 0.8
        await self.stop_collectors()
        await self.stop_alerting()  # its last transitions still reach the buffer
        if self.shipper is not None:
            await self.shipper.stop(deadline)  # the open batch goes to disk first
        if self.api is not None:
            await self.api.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def start_shipper(self) -> None:
        if not self.config.hub.url:
            return
        if self._token is None:
            loop = asyncio.get_running_loop()
            self._token = await loop.run_in_executor(self.executor, read_token, self.config)
        self.shipper = Shipper(self.config, self._token)
        await self.shipper.start()

    # -- collectors ----------------------------------------------------------

    async def start_collectors(self) -> None:
        cfg = self.config
        collectors = build_collectors(cfg, self.source)
        if cfg.logs or cfg.journal:  # [[journal]] tables are read by the same collector
            self.logs = LogCollector(
                (*cfg.logs, *cfg.journal), cfg.log_detectors, cfg.agent.state_dir
            )
            await self.logs.start(self)
            collectors.append(self.logs)
        collectors.append(SelfCollector(self.stats, self.started, extra=self.shipper_metrics))
        self.specs = {spec.name: spec for c in collectors for spec in c.specs}
        self.specs.update((spec.name, spec) for spec in (*SHIPPER_SPECS, *ALERTING_SPECS))
        for collector in collectors:
            interval = cfg.interval_for(collector.name)
            timeout = cfg.agent.collect_timeout or interval
            phase = self.phases.setdefault(interval, random.uniform(0.0, interval))
            self._schedule(
                Schedule(
                    collector,
                    interval,
                    timeout,
                    cfg.agent.jitter,
                    self.on_records,
                    self.stats.setdefault(collector.name, CollectorStats()),
                    self.executor,
                    phase=phase,
                )
            )
        if cfg.checks:
            await self.start_checks()

    def _schedule(self, schedule: Schedule) -> None:
        self.schedules.append(schedule)
        self.tasks.append(asyncio.create_task(schedule.run(), name=f"collector:{schedule.name}"))

    async def start_checks(self) -> None:
        """One schedule per check, at its own interval and a phase of it
        (collectors/checks/service.py), plus the task saving their SLA state."""
        self.checks = Checks(self.config.checks, self.config.agent.state_dir)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.checks.load)
        self.specs.update((spec.name, spec) for spec in CHECK_SPECS)
        for collector in self.checks.collectors():
            interval = collector.cfg.interval
            stats = self.stats.setdefault(collector.name, CollectorStats())
            # a run's retries stay within its interval (runner.py); the
            # timeout is the scheduler's safety net beyond that
            timeout = interval + HARD_STOP
            phase = phase_of(collector.cfg.name, interval)
            self._schedule(
                Schedule(
                    collector,
                    interval,
                    timeout,
                    0.0,
                    self.on_records,
                    stats,
                    phase=phase,
                    first_at_phase=True,
                )
            )
        self.tasks.append(asyncio.create_task(self._save_checks(), name="checks:save"))

    async def _save_checks(self) -> None:
        while True:
            await asyncio.sleep(CHECKS_SAVE_EVERY)
            await self.save_checks()

    async def save_checks(self) -> None:
        if self.checks is None:
            return
        try:
            await write_snapshot(self.executor, self.checks.snapshot())
        except OSError as exc:
            log.error("check_state_not_saved", error=exc.strerror or str(exc))

    async def stop_collectors(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.logs is not None:
            await self.logs.stop()  # commits what was read, while the buffer is open
            self.logs = None
        if self.checks is not None:
            await self.save_checks()
            await self.checks.close()
            self.checks = None
        self._retired = [s for s in self._retired + self.schedules if s.stuck]
        self.tasks.clear()
        self.schedules.clear()

    async def first_round(self) -> None:
        """Wait until every collector has tried once (each bounded by its timeout)."""

        async def attempted(schedule: Schedule, task: asyncio.Task[None]) -> None:
            # a supervisor that died will never report its first attempt
            first = asyncio.create_task(schedule.first_attempt.wait())
            await asyncio.wait([first, task], return_when=asyncio.FIRST_COMPLETED)
            first.cancel()

        # checks wait for their phase first (spread over their interval): not awaited
        await asyncio.gather(
            *(attempted(s, t) for s, t in zip(self.schedules, self.tasks) if not s.first_at_phase)
        )

    def on_records(self, collector: str, records: Sequence[Record]) -> None:
        self.latest[collector] = records
        if self.alerting is not None:
            self.alerting.observe(records)
        if self.shipper is not None:
            self.shipper.add(records)

    # -- alerting ----------------------------------------------------------------------

    async def start_alerting(self) -> None:
        self.alerting = Alerting(self.config, self.on_alert_event)
        await self.alerting.start(self.executor)

    async def stop_alerting(self) -> None:
        if self.alerting is not None:
            await self.alerting.stop()
            self.alerting = None

    def on_alert_event(self, event: Event) -> None:
        """Alert transitions go to the buffer, so the hub gets the history."""
        if self.shipper is not None:
            self.shipper.add([event])

    # -- checkpoints: state that moves in step with the buffer (agent/core/checkpoint.py)

    async def load_checkpoint(self, store: CheckpointStore, name: str) -> Any:
        if self.shipper is not None:
            return await self.shipper.load_checkpoint(store, name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, store.load, name, None)

    async def commit_checkpoint(
        self, store: CheckpointStore, records: list[dict[str, Any]], parts: dict[str, Any]
    ) -> None:
        if self.shipper is not None:
            await self.shipper.commit_checkpoint(store, records, parts)
            return
        # No hub, no buffer: events go to the journal, as structured log lines.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, store.commit, None, [], parts)
        for r in records:
            log.info("log_event", **{k: v for k, v in r.items() if k != "kind"})

    def shipper_metrics(self, ts: float) -> list[Record]:
        """Self-metrics of the parts that are not collectors: shipper, alerting."""
        out: list[Record] = []
        if self.shipper is not None:
            out += self.shipper.metrics(ts)
        if self.alerting is not None:
            out += self.alerting.metrics(ts)
        return out

    # -- reload ----------------------------------------------------------------

    async def reload(self) -> None:
        log.info("reload_requested", config=self.config_path)
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self.executor, config_mod.load, self.config_path)
        except ConfigError as exc:
            log.error(
                "reload_failed_keeping_old_config",
                config=self.config_path,
                errors=[str(p) for p in exc.problems],
            )
            self.notifier.send(
                f"STATUS=reload failed, running the previous config; {self.status_line()}"
            )
            return
        if new.agent.state_dir != self.config.agent.state_dir:
            log.warning("state_dir_change_needs_restart", kept=str(self.config.agent.state_dir))
            new = _with_state_dir(new, self.config.agent.state_dir)
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        old, self.config = self.config, new
        logsetup.configure(new.agent.log_level, new.agent.log_format)
        await self.stop_collectors()
        await self.stop_alerting()
        self.latest.clear()
        if (new.host.procfs, new.host.sysfs) != (old.host.procfs, old.host.sysfs):
            self.source = default_source(str(new.host.procfs), str(new.host.sysfs))
        await self.start_alerting()
        await self.start_collectors()
        if (new.hub, new.buffer, new.agent.host_id) != (old.hub, old.buffer, old.agent.host_id):
            if self.shipper is not None:
                await self.shipper.stop(loop.time() + 1.0)
                self.shipper = None
            self._token = None
            try:
                await self.start_shipper()
            except OSError as exc:
                log.error("hub_token_unreadable", error=str(exc))
        if new.api != old.api:
            if self.api is not None:
                await self.api.stop()
                self.api = None
            await self.start_api()
        self.notifier.send("READY=1", f"STATUS={self.status_line()}")
        log.info("reloaded", config=new.source, collectors=[s.name for s in self.schedules])

    # -- endpoint, status, watchdog ---------------------------------------------

    async def start_api(self) -> None:
        listen = self.config.api.listen
        if not listen:
            return
        api = ApiServer(listen, self.metrics_text, self.status, self.explain_alert)
        try:
            await api.start()
        except OSError as exc:
            # Collection goes on without the endpoint; the operator sees why.
            log.error("api_listen_failed", listen=listen, error=exc.strerror or str(exc))
            return
        self.api = api

    def metrics_text(self) -> str:
        samples = (r for records in self.latest.values() for r in records if isinstance(r, Metric))
        return render(samples, self.specs)

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "version": __version__,
            "host_id": self.config.agent.host_id,
            "pid": os.getpid(),
            "started": self.started,
            "uptime_seconds": now - self.started,
            "config": self.config.source,
            "state_dir": str(self.config.agent.state_dir),
            "errors": sum(st.errors + st.timeouts for st in self.stats.values()),
            "shipper": self.shipper.status() if self.shipper is not None else None,
            "logs": self.logs.status() if self.logs is not None else None,
            "alerts": self.alerting.status() if self.alerting is not None else None,
            "checks": self.checks.status(now) if self.checks is not None else None,
            "collectors": [self._collector_status(s) for s in self.schedules],
        }

    @staticmethod
    def _collector_status(s: Schedule) -> dict[str, Any]:
        problem = s.collector.problem()  # asked once: it may build a string
        return {
            "name": s.name,
            "last_error": problem or s.stats.last_error,
            "failing": s.stats.failures_in_a_row > 0 or problem is not None,
            "interval_seconds": s.interval,
            "runs": s.stats.runs,
            "errors": s.stats.errors,
            "timeouts": s.stats.timeouts,
            "overruns": s.stats.overruns,
            "samples": s.stats.samples,
            "last_run": s.stats.last_run,
            "last_success": s.stats.last_success,
            "last_duration_seconds": s.stats.last_duration,
        }

    def explain_alert(self, rule: str) -> dict[str, Any] | None:
        return self.alerting.explain(rule) if self.alerting is not None else None

    def status_line(self) -> str:
        failing = [
            s.name
            for s in self.schedules
            if s.stats.failures_in_a_row or s.collector.problem() is not None
        ]
        line = f"{len(self.schedules)} collectors running"
        return line + (f"; failing: {', '.join(failing)}" if failing else "")

    async def watchdog(self) -> None:
        """WATCHDOG=1 at half of WatchdogSec while the loop runs and no
        supervisor task has died; otherwise systemd restarts us."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            dead = [t.get_name() for t in self.tasks if t.done()]
            if dead:
                log.error("watchdog_withheld", dead_tasks=dead)
            else:
                self.notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)


def _with_state_dir(config: Config, state_dir: Any) -> Config:
    agent = dataclasses.replace(config.agent, state_dir=state_dir)
    new = dataclasses.replace(config, agent=agent)
    object.__setattr__(new, "source", config.source)
    return new
