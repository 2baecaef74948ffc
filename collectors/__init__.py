"""Collectors: one module per source. To add one, write a `Collector`
subclass in its own module (see `base.py`) and list it here."""

from __future__ import annotations

from collectors.cpu import CpuCollector
from collectors.disk import DiskCollector
from collectors.diskio import DiskIOCollector
from collectors.load import LoadCollector
from collectors.memory import MemoryCollector
from collectors.network import NetworkCollector
from collectors.system import SystemCollector

# Host metric groups, in the order `vigil once` shows them. Their names are
# the values `[host] enabled` accepts.
HOST_COLLECTORS = {
    cls.name: cls
    for cls in (
        CpuCollector,
        LoadCollector,
        MemoryCollector,
        DiskCollector,
        DiskIOCollector,
        NetworkCollector,
        SystemCollector,
    )
}
