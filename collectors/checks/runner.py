"""One run of a check: attempts with retries, then the records it makes.

A run makes up to 1 + `retries` attempts, `retry_delay` apart, and stops
at the first OK one: a probe that fails once then succeeds is OK, with
two attempts recorded (flapping probes are the top complaint about
blackbox_exporter). Retries never push a run past its interval: an
attempt that could not finish before the next run is due is not started.
Each attempt is bounded by the check's `timeout`; the probes honour it
themselves (with a clear message) and the runner stops any that does not,
HARD_STOP seconds later.

Records of a run (labels: check, type and the check's own `labels`): a
`check` record with every attempt; the metrics check_up, check_status
(the Nagios code), check_duration_seconds, check_attempts, and where they
apply check_status_code, check_certificate_expiry_seconds and the plugin's
perfdata; the SLA figures (sla.py) per window; and an event when the
check starts failing or recovers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.core.records import CheckRun, Event, Metric, Record
from collectors.checks.config import CheckConfig
from collectors.checks.model import STATUS_CODES, Outcome, ProbeContext
from collectors.checks.sla import SLA

HARD_STOP = 2.0  # seconds past `timeout` before the runner stops a probe itself

# The check's own `cfg.probe`, or a stand-in (tests script outcomes with one).
Probe = Callable[[ProbeContext], Awaitable[Outcome]]


@dataclass(frozen=True)
class Run:
    cfg: CheckConfig
    attempts: tuple[Outcome, ...]

    @property
    def outcome(self) -> Outcome:
        return self.attempts[-1]


async def attempt(probe: Probe, cfg: CheckConfig, ctx: ProbeContext) -> Outcome:
    start = time.monotonic()
    task = asyncio.ensure_future(probe(ctx))
    try:
        done, _ = await asyncio.wait({task}, timeout=cfg.timeout + HARD_STOP)
    finally:
        if not task.done():
            task.cancel()
    if not done:
        return Outcome(
            False, "critical", f"timed out after {cfg.timeout:g}s", time.monotonic() - start
        )
    try:
        return task.result()
    except Exception as exc:  # a probe bug must not look like a healthy check
        return Outcome(
            False, "unknown", f"probe error: {type(exc).__name__}: {exc}", time.monotonic() - start
        )


async def run_check(probe: Probe, cfg: CheckConfig, ctx: ProbeContext) -> Run:
    start = time.monotonic()
    outcomes = [await attempt(probe, cfg, ctx)]
    while not outcomes[-1].ok and len(outcomes) <= cfg.retries:
        if time.monotonic() - start + cfg.retry_delay + cfg.timeout > cfg.interval:
            break  # the next run would be due before this attempt ends
        await asyncio.sleep(cfg.retry_delay)
        outcomes.append(await attempt(probe, cfg, ctx))
    return Run(cfg, tuple(outcomes))


def labels_of(cfg: CheckConfig) -> dict[str, str]:
    return {**cfg.labels, "check": cfg.name, "type": cfg.type}


def records(run: Run, ts: float, sla: SLA) -> list[Record]:
    """The check record, metrics, SLA figures and any transition event of a
    run; updates `sla` with it."""
    cfg, out = run.cfg, run.outcome
    labels = labels_of(cfg)
    fields: dict[str, Any] = {}
    metrics = [
        Metric("check_up", float(out.ok), ts, labels),
        Metric("check_status", float(STATUS_CODES[out.status]), ts, labels),
        Metric("check_duration_seconds", out.latency, ts, labels),
        Metric("check_attempts", float(len(run.attempts)), ts, labels),
    ]
    if out.status_code is not None:
        fields["status_code"] = out.status_code
        metrics.append(Metric("check_status_code", float(out.status_code), ts, labels))
    # the certificate the latest attempt that saw one reported
    seen = next((a for a in reversed(run.attempts) if a.cert_expiry_days is not None), None)
    if seen is not None and seen.cert_expiry_days is not None:
        cert_days = seen.cert_expiry_days
        fields["certificate_expiry_days"] = cert_days
        fields["certificate"] = dict(seen.cert)
        expiry = cert_days * 86400.0
        metrics.append(Metric("check_certificate_expiry_seconds", expiry, ts, labels))
    if out.perf:
        fields["perf"] = [dataclasses.asdict(p) for p in out.perf]
    for p in out.perf:
        perf_labels = {**labels, "label": p.label, "unit": p.unit}
        metrics.append(Metric("check_perfdata", p.value, ts, perf_labels))
        if p.warn is not None:
            metrics.append(Metric("check_perfdata_warning", p.warn, ts, perf_labels))
        if p.crit is not None:
            metrics.append(Metric("check_perfdata_critical", p.crit, ts, perf_labels))

    was_ok = sla.last_ok
    sla.add(ts, out.ok, out.latency)
    metrics.append(Metric("check_runs_total", float(sla.runs), ts, labels, "counter"))
    metrics.append(Metric("check_failures_total", float(sla.failures), ts, labels, "counter"))
    for window, (availability, quantiles) in sla.figures(ts).items():
        wl = {**labels, "window": window}
        if availability is not None:
            metrics.append(Metric("check_availability_ratio", availability, ts, wl))
        for q, latency in quantiles.items():
            metrics.append(
                Metric("check_latency_seconds", latency, ts, {**wl, "quantile": f"{q:g}"})
            )

    attempts = tuple(
        {"status": a.status, "message": a.message, "latency": a.latency} for a in run.attempts
    )
    result: list[Record] = [
        CheckRun(
            cfg.name,
            ts,
            cfg.type,
            out.ok,
            out.status,
            out.latency,
            out.message,
            attempts,
            labels,
            fields,
        ),
        *metrics,
    ]
    event = transition(cfg, sla, was_ok, out, ts)
    if event is not None:
        result.append(event)
    return result


def transition(
    cfg: CheckConfig, sla: SLA, was_ok: bool | None, out: Outcome, ts: float
) -> Event | None:
    """An event when a check starts failing or recovers; the state is kept
    in the SLA file, so a restart does not announce it again."""
    sla.last_ok = out.ok
    if out.ok == was_ok or (out.ok and was_ok is None):
        return None  # no change, or a first run that is fine
    fields = {"check": cfg.name, "type": cfg.type, "status": out.status, "error": out.message}
    if not out.ok:
        sla.failing_since = ts
        return Event(
            "check",
            ts,
            f"check {cfg.name} failed: {out.message}",
            "high",
            {**fields, "transition": "failed"},
        )
    since, sla.failing_since = sla.failing_since, None
    down = f" after {_duration(ts - since)}" if since is not None else ""
    return Event(
        "check",
        ts,
        f"check {cfg.name} recovered{down}",
        "info",
        {**fields, "transition": "recovered", "down_seconds": ts - since if since else None},
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
