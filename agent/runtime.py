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
import gc
import os
import random
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from agent import __version__
from agent import config as config_mod
from agent.config import Config
from agent.core import logsetup, statedir
from agent.core.checkpoint import CheckpointStore
from agent.core.configfile import same_files
from agent.core.exposition import render
from agent.core.records import Event, Metric, Record, with_legacy_names
from agent.core.schema import ConfigError, Problem, did_you_mean
from agent.core.sdnotify import SystemdNotifier
from agent.scheduler import CollectorStats, Schedule
from agent.selfmetrics import SelfCollector
from agent.services import (
    AlertingService,
    LogsService,
    Service,
    ShipperService,
    services_for,
)
from collectors import HOST_COLLECTORS
from collectors.base import Collector, Spec
from collectors.procfs import default_source
from collectors.source import HostSource

if TYPE_CHECKING:
    from agent.alerts.service import Alerting
    from agent.shipper import Shipper
    from collectors.logs.tailer import LogCollector

S = TypeVar("S", bound=Service)

log = structlog.get_logger()


def build_collectors(config: Config, source: HostSource) -> list[Collector]:
    """The host collectors `[host] enabled` asks for, with their options."""
    out: list[Collector] = []
    for name in config.host.enabled:
        cls: Any = HOST_COLLECTORS[name]
        options = config.host.options.get(name)
        out.append(cls(source) if options is None else cls(source, options))
    return out


def load_for_run(path: str | None) -> tuple[Config, list[Problem]]:
    """The configuration as `vigil run` uses it: the file, then the files
    and directories it names (ConfigError for either), and the warnings.
    `vigil check-config`, `vigil run` and a reload all load through here, so
    none accepts what another refuses."""
    config = config_mod.load(path)
    return config, config_mod.read_files(config) + rules_on_nothing(config) + unused(config)


def log_warnings(warnings: list[Problem]) -> None:
    for warning in warnings:  # as check-config prints them
        log.warning("config_warning", file=warning.file, key=warning.path, problem=warning.message)


def metric_names(config: Config) -> set[str]:
    """Every metric name the agent `config` describes can emit (host
    collectors, the configured parts, its own): what an alert rule can
    select (a summary has no `_sum` or `_count` series here)."""
    from agent.core.records import RENAMED

    specs = [spec for name in config.host.enabled for spec in HOST_COLLECTORS[name].specs]
    specs += SelfCollector.specs
    for service in services_for(config):
        specs += service.specs()
    names = {spec.name for spec in specs}
    if config.agent.legacy_metric_names:
        names |= {old.old for new, old in RENAMED.items() if new in names}
    return names


def rules_on_nothing(config: Config) -> list[Problem]:
    """Rules whose metric nothing configured emits: they would never fire
    (`disk_usage_percent` for disk_used_percent), and only `vigil alerts
    test` said so."""
    from agent.alerts.query import parse

    if config.scrape or config.textfile.directory is not None:
        return []  # what a scrape or a textfile will serve is not known before it does
    names = metric_names(config)
    out = []
    for i, rule in enumerate(config.alerts):
        leaves = parse(rule.expr).leaves()
        outcome = "the rule never fires" if len(leaves) == 1 else "that part of it is always empty"
        for leaf in leaves:
            metric = leaf.selector.metric
            if metric not in names and leaf.func != "absent":  # absent(): fires on nothing
                out.append(
                    Problem(
                        config.origins.file_of(f"alerts[{i}].expr"),
                        f"alerts[{i}].expr",
                        f"rule {rule.name!r}: nothing configured emits {metric}"
                        f"{did_you_mean(metric, names)}; {outcome}",
                    )
                )
    return out


def unused(config: Config) -> list[Problem]:
    """Checks and log tables whose results go nowhere: no hub, no local
    endpoint, no alert rule on their metrics (the default rules switched
    off); and for a log table, no rule or detector either, as the events
    these find are logged (journald keeps them) when there is no hub.
    Legal, but a rule or an output was probably forgotten."""
    if config.hub.targets or config.api.listen:
        return []
    from agent.alerts.query import parse
    from agent.alerts.service import rule_configs

    selectors = [
        leaf.selector for rule in rule_configs(config) for leaf in parse(rule.expr).leaves()
    ]
    nowhere = "no hub, no [api] endpoint and no alert rule reads them"
    out = []
    if config.checks:
        from collectors.checks.service import SPECS as CHECK_SPECS

        metrics = {spec.name for spec in CHECK_SPECS}
        for i, check in enumerate(config.checks):
            labels = {**check.labels, "check": check.name, "type": check.type}
            if not any(s.metric in metrics and s.matches(s.metric, labels) for s in selectors):
                key = f"checks[{i}]"
                problem = f"check {check.name!r}: its results go nowhere: {nowhere}"
                out.append(Problem(config.origins.file_of(key), key, problem))
    blind = [  # the tables that look for nothing
        f"{kind}[{i}]"
        for kind, tables in (("logs", config.logs), ("journal", config.journal))
        for i, table in enumerate(tables)
        if not (table.rules or table.default_rules or table.detectors)
    ]
    if blind:
        from collectors.logs.tailer import LogCollector

        metrics = {spec.name for spec in LogCollector.specs}
        if not any(s.metric in metrics for s in selectors):  # its files' labels are unknown here
            for key in blind:
                problem = f"no rules and no detectors, and its line counts go nowhere: {nowhere}"
                out.append(Problem(config.origins.file_of(key), key, problem))
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
        self.lock = statedir.StateLock(config.agent.state_dir)
        self.services: list[Service] = []  # running, in start order (agent/services.py)
        self._token: str | None = None
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None

    def _service(self, cls: type[S]) -> S | None:
        return next((s for s in self.services if isinstance(s, cls)), None)

    # The data path reaches two services directly: records go to the alert
    # engine and the buffer, log state is committed through the buffer.
    @property
    def shipper(self) -> Shipper | None:
        service = self._service(ShipperService)
        return service.shipper if service is not None else None

    @property
    def alerting(self) -> Alerting | None:
        service = self._service(AlertingService)
        return service.alerting if service is not None else None

    @property
    def logs(self) -> LogCollector | None:
        service = self._service(LogsService)
        return service.collector if service is not None else None

    # -- lifecycle ---------------------------------------------------------

    def prepare(self) -> None:
        """Before the loop starts, as it blocks: create and lock the state
        directory, read the hub token."""
        statedir.prepare(self.config.agent.state_dir)
        self.lock.acquire()
        if self.config.hub.targets:
            self._token = self.config.hub.read_token()

    async def token(self) -> str:
        """The hub token: read by `prepare()`, read again after a reload."""
        if self._token is None:
            loop = asyncio.get_running_loop()
            self._token = await loop.run_in_executor(self.executor, self.config.hub.read_token)
        return self._token

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
            config=self.config.source,
            host_id=self.config.agent.host_id,
            state_dir=str(self.config.agent.state_dir),
        )
        await self.start_services(services_for(self.config))
        self.start_collectors()
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
            # What start-up made (modules, config, the engines' tables) lives
            # as long as the agent: out of the garbage collector's way, so a
            # full collection, which the records of each interval bring on
            # now and then, no longer walks it
            gc.collect()
            gc.freeze()
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
        await self.stop_services(self.services, deadline)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- services: the long-running parts (agent/services.py) ---------------------

    async def start_services(self, services: list[Service]) -> None:
        """Start each in order; one started is reachable at once (the log
        collector loads its checkpoints through the running shipper)."""
        for service in services:
            await service.start(self)
            self.services.append(service)

    async def stop_services(self, services: list[Service], deadline: float) -> None:
        """Stop `services` in reverse start order: the shipper last."""
        for service in reversed(services):
            await service.stop(deadline)
        self.services = [s for s in self.services if s not in services]

    # -- collectors ----------------------------------------------------------

    def schedule(
        self,
        collector: Collector,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        jitter: float | None = None,
        phase: float | None = None,
        first_at_phase: bool = False,
    ) -> Schedule:
        """A schedule for `collector`; by default at its configured interval,
        on this agent's grid for that interval."""
        cfg = self.config
        interval = interval or cfg.interval_for(collector.name)
        if phase is None:
            phase = self.phases.setdefault(interval, random.uniform(0.0, interval))
        return Schedule(
            collector,
            interval,
            timeout or cfg.agent.collect_timeout or interval,
            cfg.agent.jitter if jitter is None else jitter,
            self.on_records,
            self.stats.setdefault(collector.name, CollectorStats()),
            self.executor,
            phase=phase,
            first_at_phase=first_at_phase,
        )

    def start_collectors(self) -> None:
        """The host collectors, the services' collectors and the agent's own."""
        host = [self.schedule(c) for c in build_collectors(self.config, self.source)]
        schedules = host + [s for service in self.services for s in service.schedules(self)]
        schedules.append(
            self.schedule(SelfCollector(self.stats, self.started, extra=self.service_metrics))
        )
        self.specs = {spec.name: spec for s in schedules for spec in s.collector.specs}
        for service in self.services:
            self.specs.update((spec.name, spec) for spec in service.specs())
        for schedule in schedules:
            self.schedules.append(schedule)
            task = asyncio.create_task(schedule.run(), name=f"collector:{schedule.name}")
            self.tasks.append(task)

    async def stop_collectors(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
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
        if self.config.agent.legacy_metric_names:
            records = with_legacy_names(records)
        self.latest[collector] = records
        if (alerting := self.alerting) is not None:
            alerting.observe(records)
        if (shipper := self.shipper) is not None:
            shipper.add(records)

    def on_alert_event(self, event: Event) -> None:
        """Alert transitions go to the buffer, so the hub gets the history."""
        if (shipper := self.shipper) is not None:
            shipper.add([event])

    # -- checkpoints: state that moves in step with the buffer (agent/core/checkpoint.py)

    async def load_checkpoint(self, store: CheckpointStore, name: str) -> Any:
        if (shipper := self.shipper) is not None:
            return await shipper.load_checkpoint(store, name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, store.load, name, None)

    async def commit_checkpoint(
        self, store: CheckpointStore, records: list[dict[str, Any]], parts: dict[str, Any]
    ) -> None:
        if (shipper := self.shipper) is not None:
            await shipper.commit_checkpoint(store, records, parts)
            return
        # No hub, no buffer: events go to the journal, as structured log lines.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, store.commit, None, [], parts)
        for r in records:
            log.info("log_event", **{k: v for k, v in r.items() if k != "kind"})

    def service_metrics(self, ts: float) -> list[Record]:
        """Self-metrics of the parts that are not collectors: shipper, alerting."""
        return [r for service in self.services for r in service.metrics(ts)]

    # -- reload ----------------------------------------------------------------

    async def reload(self) -> None:
        log.info("reload_requested", config=self.config_path)
        loop = asyncio.get_running_loop()
        try:
            new, warnings = await loop.run_in_executor(
                self.executor, load_for_run, self.config_path
            )
        except Exception as exc:  # ConfigError; anything else is a bug, but not a silent one
            problems = exc.problems if isinstance(exc, ConfigError) else [repr(exc)]
            log.error(
                "reload_failed_keeping_old_config",
                config=self.config_path,
                errors=[str(p) for p in problems],
            )
            self.notifier.send(
                f"STATUS=reload failed, running the previous config; {self.status_line()}"
            )
            return
        if new.agent.state_dir != self.config.agent.state_dir:
            log.warning("state_dir_change_needs_restart", kept=str(self.config.agent.state_dir))
            new = _with_state_dir(new, self.config.agent.state_dir)
        log_warnings(warnings)
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        old, self.config = self.config, new
        logsetup.configure(new.agent.log_level, new.agent.log_format)
        await self.stop_collectors()
        # A part whose configuration did not change carries on (the shipper
        # keeps its connection, the endpoint its port); the others restart.
        wanted = services_for(new)
        kept = {
            type(s): s
            for s in self.services
            if any(type(w) is type(s) for w in wanted) and s.keeps_running(new)
        }
        await self.stop_services(
            [s for s in self.services if s not in kept.values()], loop.time() + 1.0
        )
        self.latest.clear()
        if (new.host.procfs, new.host.sysfs) != (old.host.procfs, old.host.sysfs):
            self.source = default_source(str(new.host.procfs), str(new.host.sysfs))
        self._token = None  # token_file is read again, whether [hub] changed or not
        self.services = []
        for service in wanted:
            running = kept.get(type(service))
            if isinstance(running, ShipperService):
                await self._retoken(running)
            if running is None:
                try:
                    await service.start(self)
                except OSError as exc:  # an unreadable token: carry on without pushing
                    log.error("service_not_started", service=service.name, error=str(exc))
                    continue
            self.services.append(running or service)
        self.start_collectors()
        self.notifier.send("READY=1", f"STATUS={self.status_line()}")
        log.info("reloaded", config=new.source, collectors=[s.name for s in self.schedules])

    async def _retoken(self, service: ShipperService) -> None:
        """The running shipper takes the token read now (a fixed or rotated
        token_file); one that cannot be read leaves it the token it has."""
        try:
            token = await self.token()
        except OSError as exc:
            log.error(
                "hub_token_unreadable_keeping_token",
                token_file=str(self.config.hub.token_file),
                error=exc.strerror or str(exc),
            )
            if service.shipper is not None:
                self._token = service.shipper.token
            return
        service.use_token(token)

    # -- endpoint, status, watchdog ---------------------------------------------

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
            # each running part under its name: shipper, alerts, logs, checks
            **{name: None for name in ("shipper", "alerts", "logs", "checks")},
            **{s.name: s.status(now) for s in self.services if s.name != "api"},
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
        alerting = self.alerting
        return alerting.explain(rule) if alerting is not None else None

    def metric_names(self) -> set[str]:
        return metric_names(self.config)

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
    same_files(new, config.origins)
    return new
