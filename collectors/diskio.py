"""Disk I/O per block device: counters and per-second rates, busy percent."""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.records import Metric, Record
from agent.core.schema import check_regex, opt
from collectors.base import Collector, any_of, counter, gauge, host_collector
from collectors.rates import RateTracker
from collectors.source import HostSource

# Partitions (their whole disk is reported), RAM disks, loop devices and the like.
DEFAULT_EXCLUDE_DEVICES = (
    r"^(ram|loop|fd|zram|sr|nbd)\d+$",
    r"^(h|s|v|xv)d[a-z]+\d+$",
    r"^nvme\d+n\d+p\d+$",
    r"^mmcblk\d+p\d+$",
)

# source field -> (counter name, rate name, rate scale)
_FIELDS = {
    "reads": ("disk_reads_total", "disk_reads_per_second", 1.0),
    "writes": ("disk_writes_total", "disk_writes_per_second", 1.0),
    "read_bytes": ("disk_read_bytes_total", "disk_read_bytes_per_second", 1.0),
    "write_bytes": ("disk_written_bytes_total", "disk_written_bytes_per_second", 1.0),
    "busy_seconds": ("disk_io_time_seconds_total", "disk_busy_percent", 100.0),
}


@dataclass(frozen=True)
class DiskIOConfig:
    exclude_devices: tuple[str, ...] = opt(DEFAULT_EXCLUDE_DEVICES, each=check_regex)
    include_devices: tuple[str, ...] = opt((), each=check_regex)  # kept despite the above


@host_collector
class DiskIOCollector(Collector):
    name = "diskio"
    Options = DiskIOConfig
    blocking = False  # procfs reads: kernel memory, no storage to wait on
    specs = (
        counter("disk_reads_total", "Read operations completed since boot."),
        counter("disk_writes_total", "Write operations completed since boot."),
        counter("disk_read_bytes_total", "Bytes read since boot."),
        counter("disk_written_bytes_total", "Bytes written since boot."),
        counter("disk_io_time_seconds_total", "Time the device had I/O in progress."),
        gauge("disk_reads_per_second", "Read operations per second over the last interval."),
        gauge("disk_writes_per_second", "Write operations per second over the last interval."),
        gauge("disk_read_bytes_per_second", "Bytes read per second over the last interval."),
        gauge("disk_written_bytes_per_second", "Bytes written per second over the last interval."),
        gauge("disk_busy_percent", "Share of the last interval the device had I/O in progress."),
    )

    def __init__(self, source: HostSource, config: DiskIOConfig | None = None) -> None:
        self.source = source
        cfg = config or DiskIOConfig()
        self._exclude = any_of(cfg.exclude_devices)
        self._include = any_of(cfg.include_devices)
        self._rates = RateTracker()

    def wanted(self, device: str) -> bool:
        if self._include is not None and self._include.search(device):
            return True
        return self._exclude is None or not self._exclude.search(device)

    def collect(self, ts: float, mono: float) -> list[Record]:
        devices = {d: c for d, c in self.source.disk_io().items() if self.wanted(d)}
        rates = self._rates.step(
            mono, {(d, f): c[f] for d, c in devices.items() for f in _FIELDS if f in c}
        )
        out: list[Record] = []
        for device, values in devices.items():
            labels = {"device": device}
            for field, (total_name, rate_name, scale) in _FIELDS.items():
                if field not in values:
                    continue
                out.append(Metric(total_name, values[field], ts, labels, "counter"))
                rate = rates.get((device, field))
                if rate is not None:
                    # I/O time accounting can run a little ahead of wall time.
                    value = min(100.0, rate * scale) if field == "busy_seconds" else rate
                    out.append(Metric(rate_name, value, ts, labels))
        return out
