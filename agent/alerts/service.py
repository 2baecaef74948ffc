"""Alerting inside the daemon: the engine fed with every record, a tick for
timers, the state saved off the loop, and notifications routed.

Routing. Every firing, repeat and resolution goes to the journal, to the
notifiers the rule names in `notify`, and to every notifier whose
`severities` include the alert's severity. `send()` never waits for the
network: remote notifiers queue durably and deliver on their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import structlog

from agent.alerts.config import AlertRuleConfig
from agent.alerts.defaults import DEFAULT_ALERTS
from agent.alerts.engine import AlertEngine, Rule, build_rule
from agent.alerts.query import CompoundExpr
from agent.config import Config
from agent.core.alert import Alert
from agent.core.atomic import write_snapshot
from agent.core.records import Event, Metric, Record
from agent.notifiers import base as notifier_base
from agent.notifiers import routing
from agent.notifiers.base import Notifier
from agent.notifiers.routing import build_notifiers
from collectors.base import Spec, counter, gauge

log = structlog.get_logger("vigil.alerts")
SPECS: tuple[Spec, ...] = (
    gauge("vigil_alerts_firing", "Alert instances firing now."),
    gauge("vigil_alerts_pending", "Alert instances pending (condition true, `for` not yet over)."),
    counter("vigil_alert_evaluations_total", "Rule evaluations, one per rule and series."),
    counter(
        "vigil_alert_evaluation_errors_total",
        "Compound rule evaluations with no answer (duplicate series on a side of a match).",
    ),
    counter(
        "vigil_alert_evaluations_bounded_total",
        "Evaluations a bound decided without reading the window (docs/alerts.md).",
    ),
    *notifier_base.SPECS,
)
SAVE_SAMPLES_EVERY = 60.0  # seconds; a kill -9 costs the rules at most this much history


def rule_configs(config: Config) -> list[AlertRuleConfig]:
    """The configured rules, then the default ones not disabled or replaced."""
    own = list(config.alerts)
    if config.alerting.default_rules:
        names = {r.name for r in own} | set(config.alerting.disable)
        own += [r for r in DEFAULT_ALERTS if r.name not in names]
    return own


def build_rules(config: Config) -> list[Rule]:
    fallback = config.alerting.min_coverage
    return [
        build_rule(
            r.name,
            r.expr,
            r.for_,
            r.clear,
            r.severity,
            r.labels,
            r.summary,
            r.repeat,
            r.notify,
            fallback if r.min_coverage is None else r.min_coverage,
        )
        for r in rule_configs(config)
    ]


class Alerting:
    def __init__(self, config: Config, emit: Callable[[Event], None]) -> None:
        self.config = config
        self.notifiers: dict[str, Notifier[Any]] = build_notifiers(
            config.notifiers, config.agent.state_dir, config.agent.host_id
        )
        self.engine = AlertEngine(
            build_rules(config),
            config.agent.host_id,
            config.agent.state_dir / "alerts.json",
            self.route,
            emit,
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.ticker: asyncio.Task[None] | None = None
        self.executor: Executor | None = None

    async def start(self, executor: Executor) -> None:
        self.executor = executor
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self.engine.load)
        for notifier in self.notifiers.values():
            await notifier.start()
        self.ticker = asyncio.create_task(self._tick(), name="alerts:tick")

    async def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
            await asyncio.gather(self.ticker, return_exceptions=True)
        if self.tasks:  # notifications in flight: local ones finish quickly
            await asyncio.wait(self.tasks, timeout=2.0)
        await self._save(samples=True)
        for notifier in self.notifiers.values():
            await notifier.stop()

    def observe(self, records: Sequence[Record]) -> None:
        try:
            self.engine.observe(records, time.time())
        except Exception as exc:  # never let alerting break collection and delivery
            log.exception("alert_evaluation_failed", error=str(exc))

    async def _tick(self) -> None:
        every = self.config.alerting.evaluate_every
        saved = time.monotonic()
        while True:
            await asyncio.sleep(every)
            try:
                self.engine.tick(time.time())
            except Exception as exc:
                log.exception("alert_evaluation_failed", error=str(exc))
            due = time.monotonic() - saved >= SAVE_SAMPLES_EVERY
            if due:
                saved = time.monotonic()
            await self._save(samples=due)

    async def _save(self, samples: bool = False) -> None:
        """The states (when they changed) and, now and then, the samples."""
        if self.executor is None:
            return
        snapshots = [self.engine.state_snapshot()]
        if samples:
            self.engine.forget_stale(time.time())
            snapshots.append(self.engine.series_snapshot())
        try:
            for snapshot in snapshots:
                await write_snapshot(self.executor, snapshot)
        except OSError as exc:
            log.error("alert_state_not_saved", error=exc.strerror or str(exc))

    def route(self, alert: Alert, named: Sequence[str]) -> None:
        for notifier in routing.route(alert, named, self.notifiers):
            task = asyncio.get_running_loop().create_task(self._send(notifier, alert))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, notifier: Notifier[Any], alert: Alert) -> None:
        try:
            await notifier.send(alert)
        except Exception as exc:  # one broken notifier must not stop the others
            log.error("notifier_failed", notifier=notifier.name, error=str(exc))

    def metrics(self, ts: float) -> list[Metric]:
        """Self-metrics: the engine's and every notifier's."""
        states = [i.state for i in self.engine.instances.values()]
        return [
            Metric("vigil_alerts_firing", states.count("firing"), ts),
            Metric("vigil_alerts_pending", states.count("pending"), ts),
            Metric("vigil_alert_evaluations_total", self.engine.evaluations, ts, type="counter"),
            Metric(
                "vigil_alert_evaluations_bounded_total", self.engine.bounded, ts, type="counter"
            ),
            Metric(
                "vigil_alert_evaluation_errors_total", self.engine.error_count, ts, type="counter"
            ),
            *notifier_base.metrics(self.notifiers, ts),
        ]

    def status(self) -> dict[str, Any]:
        return {
            "rules": self.engine.status(),
            "notifiers": {n: x.status() for n, x in self.notifiers.items()},
            "evaluations": self.engine.evaluations,
            "errors": dict(self.engine.errors),
        }

    def explain(self, name: str) -> dict[str, Any] | None:
        for rule in self.engine.rules:
            if rule.name == name:
                return explanation(rule, self.engine.explain(rule, time.time()))
        return None


def explanation(rule: Rule, series: list[dict[str, Any]]) -> dict[str, Any]:
    """`vigil alerts test`'s answer; a compound rule also says how it is
    read (query.Query.shown: its PromQL, the subset ratio spelt out)."""
    out: dict[str, Any] = {"rule": rule.name, "expr": rule.expr.text, "for": rule.for_}
    if isinstance(rule.expr, CompoundExpr):
        out["read_as"] = rule.expr.query.shown
    out["series"] = series
    return out
