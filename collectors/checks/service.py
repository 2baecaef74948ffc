"""The checks of one agent: a collector per check, for the scheduler, and
the SLA state they share, kept in STATE_DIR/checks.sla.

Scheduling is the agent's scheduler (agent/scheduler.py), one task per
check: its own interval, runs that never overlap, a slow target delaying
nobody else. Each check's runs sit at a fixed phase of its interval,
derived from its name, so checks spread over the interval instead of
probing together, and keep their phase across restarts.

The SLA state (sla.py) is written atomically once a minute and at stop;
a kill -9 loses at most the last minute of it. A damaged file is set
aside and the windows start empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack
import structlog

from agent.core.atomic import Snapshot, set_aside
from agent.core.records import Record, summary
from collectors.base import Collector, counter, gauge
from collectors.checks.config import CheckConfig
from collectors.checks.model import ProbeContext
from collectors.checks.runner import Run, records, run_check
from collectors.checks.sla import SLA

log = structlog.get_logger("vigil.checks")

STATE_FILE = "checks.sla"
SAVE_EVERY = 60.0

SPECS = (
    gauge("check_up", "1 if the check's last run passed (after its retries), else 0."),
    gauge(
        "check_status",
        "The last run's state as a Nagios code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    ),
    gauge("check_duration_seconds", "Time the last run's final attempt took."),
    gauge("check_attempts", "Attempts the last run made (1 + the retries it needed)."),
    gauge("check_status_code", "http: the final response's status code."),
    gauge(
        "check_certificate_expiry_seconds",
        "Seconds until the server certificate expires (negative: expired).",
    ),
    gauge("check_perfdata", "command: a perfdata value of the plugin, in base units."),
    gauge("check_perfdata_warning", "command: the warning threshold of a perfdata value."),
    gauge("check_perfdata_critical", "command: the critical threshold of a perfdata value."),
    counter("check_runs_total", "Runs of the check, kept across restarts."),
    counter("check_failures_total", "Failed runs of the check, kept across restarts."),
    gauge("check_availability_ratio", "Share of runs that passed over the window (1h, 24h, 30d)."),
    summary("check_latency_seconds", "Latency quantiles of the passing runs over the window."),
)


def phase_of(name: str, interval: float) -> float:
    """Where in its interval a check runs: stable per name, spread evenly."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * interval


class CheckCollector(Collector):
    blocking = False
    specs = SPECS

    def __init__(self, cfg: CheckConfig, ctx: ProbeContext, sla: SLA) -> None:
        self.name = f"check:{cfg.name}"
        self.cfg = cfg
        self.ctx = ctx
        self.sla = sla
        self.last: tuple[float, Run] | None = None  # for `vigil status`

    async def collect(self, ts: float, mono: float) -> Sequence[Record]:
        run = await run_check(self.cfg.probe, self.cfg, self.ctx)
        self.last = (ts, run)
        return records(run, ts, self.sla)

    def status(self, now: float) -> dict[str, Any]:
        cfg = self.cfg
        out: dict[str, Any] = {"name": cfg.name, "type": cfg.type, "interval": cfg.interval}
        if self.last is not None:
            ts, run = self.last
            o = run.outcome
            out.update(
                last_run=ts,
                ok=o.ok,
                status=o.status,
                message=o.message,
                latency=o.latency,
                attempts=len(run.attempts),
            )
        figures = self.sla.figures(now)
        out["availability"] = {w: a for w, (a, _) in figures.items()}
        out["latency_p95"] = {w: q.get(0.95) for w, (_, q) in figures.items()}
        return out


class Checks:
    def __init__(self, configs: Sequence[CheckConfig], state_dir: Path | None) -> None:
        self.configs = tuple(configs)
        self.path = state_dir / STATE_FILE if state_dir is not None else None
        self.ctx = ProbeContext()
        self.slas: dict[str, SLA] = {c.name: SLA() for c in self.configs}
        self.running: list[CheckCollector] = []

    def collectors(self) -> list[CheckCollector]:
        """Call after `load`: the collectors share the loaded SLA state."""
        self.running = [CheckCollector(c, self.ctx, self.slas[c.name]) for c in self.configs]
        return self.running

    def status(self, now: float) -> list[dict[str, Any]]:
        return [c.status(now) for c in self.running]

    def load(self) -> None:
        """The SLA state of the configured checks (blocking file I/O)."""
        if self.path is None or not self.path.exists():
            return
        try:
            data = msgpack.unpackb(self.path.read_bytes(), raw=False, strict_map_key=False)
            loaded = {name: SLA.load(data[name]) for name in self.slas if name in data}
        except (ValueError, TypeError, KeyError, msgpack.ExtraData, msgpack.FormatError) as exc:
            aside = set_aside(self.path)
            log.warning("check_state_unreadable", error=str(exc), moved_to=str(aside))
            return
        self.slas.update(loaded)

    def snapshot(self) -> Snapshot | None:
        """The SLA state to write; taken on the event loop, where runs change it."""
        if self.path is None:
            return None
        data = {name: sla.dump() for name, sla in self.slas.items()}
        return self.path, msgpack.packb(data, use_bin_type=True)
