"""Physical memory and swap."""

from __future__ import annotations

from agent.core.records import Metric, Record
from collectors.base import Collector, counter, gauge, host_collector
from collectors.source import HostSource


@host_collector
class MemoryCollector(Collector):
    name = "memory"
    blocking = False  # procfs reads: kernel memory, no storage to wait on
    specs = (
        gauge("memory_total_bytes", "Physical memory."),
        gauge("memory_available_bytes", "Memory available to start new work without swapping."),
        gauge("memory_used_bytes", "Memory in use: total minus free, buffers and page cache."),
        gauge("memory_free_bytes", "Memory not used for anything."),
        gauge("memory_cached_bytes", "Page cache."),
        gauge("memory_buffers_bytes", "Block device buffers."),
        gauge("memory_used_percent", "Share of memory not available: (total - available) / total."),
        gauge("swap_total_bytes", "Swap space."),
        gauge("swap_used_bytes", "Swap space in use."),
        gauge("swap_free_bytes", "Swap space free."),
        gauge("swap_used_percent", "Share of swap space in use (0 without swap)."),
        counter("swap_in_bytes_total", "Bytes swapped in from disk since boot."),
        counter("swap_out_bytes_total", "Bytes swapped out to disk since boot."),
    )

    def __init__(self, source: HostSource) -> None:
        self.source = source

    def collect(self, ts: float, mono: float) -> list[Record]:
        mem, swap = self.source.memory(), self.source.swap()
        total = mem["total"]
        out: list[Record] = [
            Metric(f"memory_{key}_bytes", mem[key], ts)
            for key in ("total", "available", "used", "free", "cached", "buffers")
        ]
        used_pct = 100.0 * (total - mem["available"]) / total if total else 0.0
        out.append(Metric("memory_used_percent", used_pct, ts))
        out.extend(Metric(f"swap_{key}_bytes", swap[key], ts) for key in ("total", "used", "free"))
        swap_pct = 100.0 * swap["used"] / swap["total"] if swap["total"] else 0.0
        out.append(Metric("swap_used_percent", swap_pct, ts))
        out.append(Metric("swap_in_bytes_total", swap["sin"], ts, type="counter"))
        out.append(Metric("swap_out_bytes_total", swap["sout"], ts, type="counter"))
        return out
