"""Load average over 1, 5 and 15 minutes, also divided by the CPU count."""

from __future__ import annotations

from agent.core.records import Metric, Record
from collectors.base import Collector, gauge, host_collector
from collectors.source import HostSource

PERIODS = ("1m", "5m", "15m")


@host_collector
class LoadCollector(Collector):
    name = "load"
    blocking = False  # procfs reads: kernel memory, no storage to wait on
    specs = (
        gauge("load_average", "Run-queue load average over the period."),
        gauge("load_average_per_cpu", "Load average divided by the number of logical CPUs."),
    )

    def __init__(self, source: HostSource) -> None:
        self.source = source

    def collect(self, ts: float, mono: float) -> list[Record]:
        loads = self.source.load_average()
        cpus = max(1, self.source.cpu_count())
        out: list[Record] = []
        for period, value in zip(PERIODS, loads):
            labels = {"period": period}
            out.append(Metric("load_average", value, ts, labels))
            out.append(Metric("load_average_per_cpu", value / cpus, ts, labels))
        return out
