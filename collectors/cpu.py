"""CPU usage per core and for all cores, from cumulative CPU times."""

from __future__ import annotations

from agent.core.records import Metric, Record
from collectors.base import Collector, gauge, host_collector
from collectors.source import HostSource

# Busy means neither idle nor waiting for I/O: iowait is idle time.
_NOT_BUSY = ("idle", "iowait")


@host_collector
class CpuCollector(Collector):
    name = "cpu"
    blocking = False  # procfs reads: kernel memory, no storage to wait on
    specs = (
        gauge("cpu_usage_percent", "Share of time the CPU was busy (not idle, not iowait)."),
        gauge("cpu_mode_percent", "Share of time the CPU spent in each mode."),
        gauge("cpus_online", "Logical CPUs online."),
    )

    def __init__(self, source: HostSource) -> None:
        self.source = source
        self._prev: dict[str, dict[str, float]] = {}

    def collect(self, ts: float, mono: float) -> list[Record]:
        now = self.source.cpu_times()
        prev, self._prev = self._prev, now
        out: list[Record] = [Metric("cpus_online", len(now) - ("all" in now), ts)]
        for cpu, times in now.items():
            before = prev.get(cpu)
            if before is not None:
                out.extend(_percentages(cpu, before, times, ts))
        return out


def _percentages(
    cpu: str, before: dict[str, float], after: dict[str, float], ts: float
) -> list[Record]:
    """Per-mode shares over one interval. A mode counter that went backwards
    (the kernel's iowait does) counts as zero; a CPU whose total went
    backwards (offlined, counters reset) gives nothing this interval."""
    if sum(after.values()) <= sum(before.values()):
        return []
    deltas = {mode: max(0.0, after[mode] - before.get(mode, after[mode])) for mode in after}
    total = sum(deltas.values())
    if total <= 0:
        return []
    labels = {"cpu": cpu}
    busy = total - sum(deltas.get(m, 0.0) for m in _NOT_BUSY)
    out: list[Record] = [Metric("cpu_usage_percent", 100.0 * busy / total, ts, labels)]
    for mode, delta in deltas.items():
        out.append(
            Metric("cpu_mode_percent", 100.0 * delta / total, ts, {"cpu": cpu, "mode": mode})
        )
    return out
