"""The agent's own footprint and the health of each collector, as metrics
like any other (so they reach /metrics, the hub, and alert rules)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from agent import __version__
from agent.core.records import Metric, Record
from agent.scheduler import CollectorStats
from collectors.base import Collector, counter, gauge
from collectors.source import read

_PAGE = os.sysconf("SC_PAGE_SIZE")


class SelfCollector(Collector):
    name = "self"
    blocking = False  # os.times() and /proc/self/statm: kernel memory, no storage to wait on
    specs = (
        gauge("vigil_agent_info", "Always 1; the version label says which agent runs."),
        gauge("vigil_agent_start_time_seconds", "When the agent started, as a Unix timestamp."),
        counter("vigil_agent_cpu_seconds_total", "CPU time the agent used, user plus system."),
        gauge("vigil_agent_resident_memory_bytes", "The agent's resident set size."),
        gauge("vigil_collector_duration_seconds", "How long the collector's last run took."),
        gauge("vigil_collector_samples", "Records the collector's last successful run produced."),
        counter("vigil_collector_runs_total", "Runs started."),
        counter("vigil_collector_errors_total", "Runs that raised an error."),
        counter("vigil_collector_timeouts_total", "Runs abandoned at their timeout."),
        counter("vigil_collector_overruns_total", "Slots skipped because a run was late or stuck."),
        gauge(
            "vigil_collector_last_success_timestamp_seconds",
            "When the collector last succeeded, as a Unix timestamp.",
        ),
    )

    def __init__(
        self,
        stats: Mapping[str, CollectorStats],
        started: float,
        proc: str = "/proc",
        extra: Callable[[float], list[Record]] | None = None,
    ) -> None:
        self.stats = stats
        self.started = started
        self.statm = f"{proc}/self/statm"
        self.extra = extra  # more self-metrics, e.g. the shipper's

    def collect(self, ts: float, mono: float) -> list[Record]:
        times = os.times()
        rss = int(read(self.statm).split()[1]) * _PAGE
        out: list[Record] = [
            Metric("vigil_agent_info", 1, ts, {"version": __version__}),
            Metric("vigil_agent_start_time_seconds", self.started, ts),
            Metric("vigil_agent_cpu_seconds_total", times.user + times.system, ts, type="counter"),
            Metric("vigil_agent_resident_memory_bytes", rss, ts),
        ]
        for name, st in self.stats.items():
            labels = {"collector": name}
            out += [
                Metric("vigil_collector_runs_total", st.runs, ts, labels, "counter"),
                Metric("vigil_collector_errors_total", st.errors, ts, labels, "counter"),
                Metric("vigil_collector_timeouts_total", st.timeouts, ts, labels, "counter"),
                Metric("vigil_collector_overruns_total", st.overruns, ts, labels, "counter"),
            ]
            if st.last_duration is not None:
                out.append(Metric("vigil_collector_duration_seconds", st.last_duration, ts, labels))
            if st.last_success is not None:
                out.append(Metric("vigil_collector_samples", st.samples, ts, labels))
                out.append(
                    Metric(
                        "vigil_collector_last_success_timestamp_seconds",
                        st.last_success,
                        ts,
                        labels,
                    )
                )
        if self.extra is not None:
            out += self.extra(ts)
        return out
