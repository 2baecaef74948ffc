"""Uptime, boot time, process count and open file handles."""

from __future__ import annotations

from agent.core.records import Metric, Record
from collectors.base import Collector, gauge, host_collector
from collectors.source import HostSource


@host_collector
class SystemCollector(Collector):
    name = "system"
    blocking = False  # procfs reads: kernel memory, no storage to wait on
    specs = (
        gauge("system_uptime_seconds", "Seconds since the host booted."),
        gauge("system_boot_time_seconds", "When the host booted, as a Unix timestamp."),
        gauge("system_processes", "Processes on the host."),
        gauge("system_open_files", "File handles allocated system-wide."),
        gauge("system_open_files_limit", "The system-wide limit on file handles."),
    )

    def __init__(self, source: HostSource) -> None:
        self.source = source

    def collect(self, ts: float, mono: float) -> list[Record]:
        boot = self.source.boot_time()
        allocated, limit = self.source.open_files()
        return [
            Metric("system_uptime_seconds", max(0.0, ts - boot), ts),
            Metric("system_boot_time_seconds", boot, ts),
            Metric("system_processes", self.source.process_count(), ts),
            Metric("system_open_files", allocated, ts),
            Metric("system_open_files_limit", limit, ts),
        ]
