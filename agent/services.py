"""The long-running parts of the daemon behind one interface.

The runtime (agent/runtime.py) wires a list of `Service`s: it starts them
in list order, stops them in reverse, shows each one's `status()` in `vigil
status` under its name, adds their `metrics()` to the self-metrics and
their `schedules()` to the scheduler. `services_for(config)` is the list a
configuration asks for, so a part that is not configured is never built,
and its heavy modules (aiohttp, hyperscan, watchfiles, cryptography) are
never imported: each service imports its part inside `start`.

Order matters once: the shipper starts first and stops last, so whatever
the others flush while stopping (log offsets with their events, the alert
engine's last transitions) still reaches the buffer.

To add a long-running part: subclass `Service`, append it in
`services_for`, and test it through a real `vigil run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog

from agent.config import Config
from agent.core.atomic import write_snapshot
from agent.core.checkpoint import CheckpointStore
from agent.core.records import Event, Record, Spec
from agent.scheduler import Schedule
from collectors.base import Collector

if TYPE_CHECKING:
    from agent.alerts.service import Alerting
    from agent.api import ApiServer
    from agent.shipper import Shipper
    from collectors.checks.service import Checks
    from collectors.logs.tailer import LogCollector

log = structlog.get_logger()


class Agent(Protocol):
    """What services get from the daemon (agent/runtime.py's Agent)."""

    @property
    def executor(self) -> Executor: ...

    def metrics_text(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def explain_alert(self, rule: str) -> dict[str, Any] | None: ...

    def metric_names(self) -> set[str]: ...

    async def token(self) -> str: ...

    def on_alert_event(self, event: Event) -> None: ...

    def schedule(
        self,
        collector: Collector,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        jitter: float | None = None,
        phase: float | None = None,
        first_at_phase: bool = False,
    ) -> Schedule: ...

    # the log collector's committer: state committed in step with the buffer
    async def load_checkpoint(self, store: CheckpointStore, name: str) -> Any: ...

    async def commit_checkpoint(
        self, store: CheckpointStore, records: list[dict[str, Any]], parts: dict[str, Any]
    ) -> None: ...


class Service:
    name: ClassVar[str]

    def __init__(self, config: Config) -> None:
        self.config = config

    async def start(self, agent: Agent) -> None:
        raise NotImplementedError

    async def stop(self, deadline: float) -> None:
        """Stop by `deadline` (the loop's clock), saving what must survive."""
        raise NotImplementedError

    def specs(self) -> Sequence[Spec]:
        """The metrics this part emits, for /metrics help text."""
        return ()

    def schedules(self, agent: Agent) -> list[Schedule]:
        """Collectors this part runs under the agent's scheduler."""
        return []

    def metrics(self, ts: float) -> list[Record]:
        return []

    def status(self, now: float) -> Any:
        return None

    def keeps_running(self, new: Config) -> bool:
        """On reload: True if this instance can carry on under `new`."""
        return False


class ShipperService(Service):
    name = "shipper"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.shipper: Shipper | None = None

    async def start(self, agent: Agent) -> None:
        from agent.shipper import Shipper

        self.shipper = Shipper(self.config, await agent.token())
        await self.shipper.start()

    async def stop(self, deadline: float) -> None:
        if self.shipper is not None:
            await self.shipper.stop(deadline)  # the open batch goes to disk first

    def specs(self) -> Sequence[Spec]:
        from agent.shipper import SPECS

        return SPECS

    def metrics(self, ts: float) -> list[Record]:
        return self.shipper.metrics(ts) if self.shipper is not None else []

    def status(self, now: float) -> Any:
        return self.shipper.status() if self.shipper is not None else None

    def keeps_running(self, new: Config) -> bool:
        """The same hub, buffer and host: the shipper carries on, and the
        runtime hands it the token read again (`use_token`), whether it is
        inline (`token`) or in `token_file`."""
        old = self.config
        same_hub = _without_token(new.hub) == _without_token(old.hub)
        return same_hub and (new.buffer, new.agent.host_id) == (old.buffer, old.agent.host_id)

    def use_token(self, token: str) -> None:
        """From now on, send with `token`; if it is new, retry at once
        rather than at the end of a backoff that a refused token started."""
        if self.shipper is not None and token != self.shipper.token:
            self.shipper.token = token
            self.shipper.retry_now()
            log.info("hub_token_changed", hub=self.shipper.hub)


class AlertingService(Service):
    name = "alerts"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.alerting: Alerting | None = None

    async def start(self, agent: Agent) -> None:
        from agent.alerts.service import Alerting

        self.alerting = Alerting(self.config, agent.on_alert_event)
        await self.alerting.start(agent.executor)

    async def stop(self, deadline: float) -> None:
        if self.alerting is not None:
            await self.alerting.stop()

    def specs(self) -> Sequence[Spec]:
        from agent.alerts.service import SPECS

        return SPECS

    def metrics(self, ts: float) -> list[Record]:
        return list(self.alerting.metrics(ts)) if self.alerting is not None else []

    def status(self, now: float) -> Any:
        return self.alerting.status() if self.alerting is not None else None


class LogsService(Service):
    """[[logs]] and [[journal]] tables: one collector reads them all."""

    name = "logs"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.collector: LogCollector | None = None

    async def start(self, agent: Agent) -> None:
        from collectors.logs.tailer import LogCollector

        cfg = self.config
        self.collector = LogCollector(
            (*cfg.logs, *cfg.journal), cfg.log_detectors, cfg.agent.state_dir
        )
        await self.collector.start(agent)

    async def stop(self, deadline: float) -> None:
        if self.collector is not None:
            await self.collector.stop()  # commits what was read, while the buffer is open

    def specs(self) -> Sequence[Spec]:
        from collectors.logs.tailer import LogCollector

        return LogCollector.specs

    def schedules(self, agent: Agent) -> list[Schedule]:
        assert self.collector is not None
        return [agent.schedule(self.collector)]

    def status(self, now: float) -> Any:
        return self.collector.status() if self.collector is not None else None


class ChecksService(Service):
    """[[checks]]: one schedule per check at its own interval and phase
    (collectors/checks/service.py), and the SLA state saved every minute."""

    name = "checks"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.checks: Checks | None = None
        self.saver: asyncio.Task[None] | None = None
        self.executor: Any = None

    async def start(self, agent: Agent) -> None:
        from collectors.checks.service import SAVE_EVERY, Checks

        self.executor = agent.executor
        self.checks = Checks(self.config.checks, self.config.agent.state_dir)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.checks.load)

        async def save_every_minute() -> None:
            while True:
                await asyncio.sleep(SAVE_EVERY)
                await self.save()

        self.saver = asyncio.create_task(save_every_minute(), name="checks:save")

    def schedules(self, agent: Agent) -> list[Schedule]:
        from collectors.checks.runner import HARD_STOP
        from collectors.checks.service import phase_of

        assert self.checks is not None
        out = []
        for collector in self.checks.collectors():
            interval = collector.cfg.interval
            # a run's retries stay within its interval (runner.py); the
            # timeout is the scheduler's safety net beyond that
            out.append(
                agent.schedule(
                    collector,
                    interval=interval,
                    timeout=interval + HARD_STOP,
                    jitter=0.0,
                    phase=phase_of(collector.cfg.name, interval),
                    first_at_phase=True,
                )
            )
        return out

    async def save(self) -> None:
        if self.checks is None:
            return
        try:
            await write_snapshot(self.executor, self.checks.snapshot())
        except OSError as exc:
            log.error("check_state_not_saved", error=exc.strerror or str(exc))

    async def stop(self, deadline: float) -> None:
        if self.saver is not None:
            self.saver.cancel()
            await asyncio.gather(self.saver, return_exceptions=True)
        if self.checks is not None:
            await self.save()

    def specs(self) -> Sequence[Spec]:
        from collectors.checks.service import SPECS

        return SPECS

    def status(self, now: float) -> Any:
        return self.checks.status(now) if self.checks is not None else None


class ApiService(Service):
    """The local endpoint, `[api] listen`. A port that cannot be bound is
    logged and collection goes on without it."""

    name = "api"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.server: ApiServer | None = None

    async def start(self, agent: Agent) -> None:
        from agent.api import ApiServer

        listen = self.config.api.listen
        assert listen is not None
        server = ApiServer(listen, agent.metrics_text, agent.status, agent.explain_alert)
        try:
            await server.start()
        except OSError as exc:
            log.error("api_listen_failed", listen=listen, error=exc.strerror or str(exc))
            return
        self.server = server

    async def stop(self, deadline: float) -> None:
        if self.server is not None:
            await self.server.stop()

    def keeps_running(self, new: Config) -> bool:
        return new.api == self.config.api


def _without_token(hub: Any) -> dict[str, Any]:
    return {f.name: getattr(hub, f.name) for f in dataclasses.fields(hub) if f.name != "token"}


class ScrapeService(Service):
    """[[scrape]] targets and the [textfile] directory: one schedule each
    (collectors/scrape.py), nothing kept across restarts."""

    name = "scrape"

    async def start(self, agent: Agent) -> None:
        pass

    async def stop(self, deadline: float) -> None:
        pass

    def specs(self) -> Sequence[Spec]:
        from collectors.scrape import SCRAPE_SPECS, TEXTFILE_SPECS

        return (*SCRAPE_SPECS, *TEXTFILE_SPECS)

    def schedules(self, agent: Agent) -> list[Schedule]:
        from collectors.scrape import ScrapeCollector, TextfileCollector

        out = []
        for cfg in self.config.scrape:
            interval = cfg.interval or self.config.agent.interval
            timeout = min(cfg.timeout or 10.0, interval)
            # the scrape keeps to `timeout` itself (scrape_up 0); this is the safety net
            collector = ScrapeCollector(cfg, timeout)
            out.append(agent.schedule(collector, interval=interval, timeout=timeout + 1.0))
        textfile = self.config.textfile
        if textfile.directory is not None:
            interval = textfile.interval or self.config.agent.interval
            reserved = frozenset(agent.metric_names())
            files = TextfileCollector(textfile, reserved)
            out.append(agent.schedule(files, interval=interval))
        return out


class ProcessesService(Service):
    """[[processes]] groups: one collector for all of them (collectors/processes.py)."""

    name = "processes"

    async def start(self, agent: Agent) -> None:
        pass

    async def stop(self, deadline: float) -> None:
        pass

    def specs(self) -> Sequence[Spec]:
        from collectors.processes import SPECS

        return SPECS

    def schedules(self, agent: Agent) -> list[Schedule]:
        from collectors.processes import ProcessCollector

        collector = ProcessCollector(self.config.processes, self.config.host.procfs)
        return [agent.schedule(collector)]


class StatsdService(Service):
    """`[statsd] listen`: the UDP server and its flush (collectors/statsd.py).
    A port that cannot be bound is logged and collection goes on without it."""

    name = "statsd"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.state: Any = None
        self.transport: asyncio.DatagramTransport | None = None

    async def start(self, agent: Agent) -> None:
        from collectors.statsd import Statsd, listen

        self.state = Statsd(self.config.statsd.max_keys)
        try:
            self.transport = await listen(self.config.statsd, self.state)
        except OSError as exc:
            log.error("statsd_listen_failed", listen=self.config.statsd.listen, error=str(exc))

    async def stop(self, deadline: float) -> None:
        if self.transport is not None:
            self.transport.close()

    def specs(self) -> Sequence[Spec]:
        from collectors.statsd import SPECS

        return SPECS

    def schedules(self, agent: Agent) -> list[Schedule]:
        from collectors.statsd import StatsdCollector

        return [agent.schedule(StatsdCollector(self.state), interval=self._flush_interval())]

    def keeps_running(self, new: Config) -> bool:
        """Its counters carry on while the table and the flush interval
        (the [agent] one when it has none) are as they were: a kept service
        schedules from the configuration it started with."""
        flushes = new.statsd.interval or new.agent.interval
        return new.statsd == self.config.statsd and flushes == self._flush_interval()

    def _flush_interval(self) -> float:
        return self.config.statsd.interval or self.config.agent.interval


def services_for(config: Config) -> list[Service]:
    """The parts `config` asks for, in start order."""
    out: list[Service] = []
    if config.hub.targets:
        out.append(ShipperService(config))
    out.append(AlertingService(config))
    if config.logs or config.journal:
        out.append(LogsService(config))
    if config.checks:
        out.append(ChecksService(config))
    if config.scrape or config.textfile.directory is not None:
        out.append(ScrapeService(config))
    if config.processes:
        out.append(ProcessesService(config))
    if config.statsd.listen:
        out.append(StatsdService(config))
    if config.api.listen:
        out.append(ApiService(config))
    return out
