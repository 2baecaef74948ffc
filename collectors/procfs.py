"""The host read straight from Linux's procfs: the default source on Linux.

psutil (`PsutilSource`) gives the same numbers but builds named tuples,
re-reads files (meminfo twice, /proc/stat three times) and does work we
discard; for an agent that wakes every few seconds on every host, that cost
is the footprint. Here each file is read once per call, and parsing is done
by the pure `parse_*` functions below, tested with literal inputs and
checked against psutil on a recorded procfs (tests/collectors/test_sources.py).
"""

from __future__ import annotations

import os
import sys
import time

from collectors.source import (
    CPU_MODES,
    FsUsage,
    HostSource,
    InterfaceKinds,
    KeptFiles,
    Mount,
    PsutilSource,
    statvfs_usage,
)

HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own size
SAME_READ = 0.1  # seconds: swap() reuses the meminfo memory() read this recently
_N_MODES = len(CPU_MODES)  # user nice system idle iowait irq softirq steal (guest is in user)


# -- pure parsers ------------------------------------------------------------


def parse_stat(text: str) -> tuple[dict[str, dict[str, float]], float]:
    """/proc/stat -> ({"all": {mode: seconds}, "0": {...}, ...}, boot time)."""
    cpus: dict[str, dict[str, float]] = {}
    # the cpu lines come first; the intr line after them holds hundreds of
    # numbers no output uses: not split
    end = text.find("\nintr ")
    for line in (text if end < 0 else text[:end]).splitlines():
        if line.startswith("cpu"):
            name, *ticks = line.split()
            key = name[3:] or "all"
            cpus[key] = {m: int(t) / HZ for m, t in zip(CPU_MODES, ticks[:_N_MODES])}
    boot, at = 0.0, text.find("\nbtime ")
    if at >= 0:
        stop = text.find("\n", at + 1)
        boot = float(text[at + 7 : stop if stop >= 0 else None])
    return cpus, boot


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {"MemTotal": bytes, ...}."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            out[key] = int(fields[0]) * (1024 if len(fields) > 1 else 1)
    return out


def memory_from(meminfo: dict[str, int]) -> dict[str, float]:
    """As free(1) shows it: cached includes reclaimable slab; used = total - available."""
    total, free = meminfo["MemTotal"], meminfo["MemFree"]
    buffers = meminfo.get("Buffers", 0)
    cached = meminfo.get("Cached", 0) + meminfo.get("SReclaimable", 0)
    # MemAvailable appeared in Linux 3.14; before it, estimate as free did.
    available = meminfo.get("MemAvailable", free + buffers + cached)
    available = min(max(available, 0), total)
    return {
        "total": total,
        "available": available,
        "used": total - available,
        "free": free,
        "cached": cached,
        "buffers": buffers,
    }


def swap_from(meminfo: dict[str, int], vmstat: str) -> dict[str, float]:
    total, free = meminfo.get("SwapTotal", 0), meminfo.get("SwapFree", 0)
    pages = {}
    for key in ("pswpin", "pswpout"):
        at = vmstat.find(f"\n{key} ") if not vmstat.startswith(f"{key} ") else -1
        line = vmstat[at + 1 :].split("\n", 1)[0]
        pages[key] = int(line.split()[1]) if line.startswith(key) else 0
    return {
        "total": total,
        "used": total - free,
        "free": free,
        "sin": pages["pswpin"] * PAGE,
        "sout": pages["pswpout"] * PAGE,
    }


def parse_diskstats(text: str) -> dict[str, dict[str, float]]:
    """/proc/diskstats (Linux 2.6+: 14, 18 or 20 fields a line)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 14:
            if f:
                raise ValueError(f"unexpected /proc/diskstats line: {line!r}")
            continue
        out[f[2]] = {
            "reads": int(f[3]),
            "writes": int(f[7]),
            "read_bytes": int(f[5]) * SECTOR,
            "write_bytes": int(f[9]) * SECTOR,
            "busy_seconds": int(f[12]) / 1000.0,
        }
    return out


_NET_FIELDS = {  # position after "iface:" in /proc/net/dev
    "receive_bytes": 0,
    "receive_packets": 1,
    "receive_errors": 2,
    "receive_drops": 3,
    "transmit_bytes": 8,
    "transmit_packets": 9,
    "transmit_errors": 10,
    "transmit_drops": 11,
}


def parse_net_dev(text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        if not sep:
            raise ValueError(f"unexpected /proc/net/dev line: {line!r}")
        values = rest.split()
        out[name.strip()] = {k: int(values[i]) for k, i in _NET_FIELDS.items()}
    return out


def count_cpu_list(text: str) -> int:
    """The kernel's CPU list format: "0-3,8,10-11" -> 7."""
    total = 0
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount paths as \ooo.
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def parse_mounts(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    return out


# -- the source ----------------------------------------------------------------


class ProcfsSource:
    """HostSource for Linux, reading `procfs` and `sysfs` (which may be the
    host's, mounted into a container)."""

    def __init__(self, procfs: str = "/proc", sysfs: str = "/sys") -> None:
        self.proc, self.sys = str(procfs), str(sysfs)
        self._boot: float | None = None
        self._kinds = InterfaceKinds(self.sys)
        self._files = KeptFiles()  # the files read every interval, kept open
        self._mount_text, self._mounts = "", list[Mount]()
        self._meminfo: tuple[float, dict[str, int]] | None = None  # memory()'s, for swap()

    def close(self) -> None:
        self._files.close()

    def _read(self, path: str) -> str:
        return self._files.read(path)

    def cpu_times(self) -> dict[str, dict[str, float]]:
        cpus, self._boot = parse_stat(self._read(f"{self.proc}/stat"))
        return cpus

    def cpu_count(self) -> int:
        try:
            return count_cpu_list(self._read(f"{self.sys}/devices/system/cpu/online"))
        except (OSError, ValueError):
            return os.cpu_count() or 1

    def load_average(self) -> tuple[float, float, float]:
        one, five, fifteen = self._read(f"{self.proc}/loadavg").split()[:3]
        return float(one), float(five), float(fifteen)

    def memory(self) -> dict[str, float]:
        meminfo = parse_meminfo(self._read(f"{self.proc}/meminfo"))
        self._meminfo = (time.monotonic(), meminfo)
        return memory_from(meminfo)

    def swap(self) -> dict[str, float]:
        # the memory collector calls memory() then swap(): meminfo read once
        kept, self._meminfo = self._meminfo, None
        if kept is not None and time.monotonic() - kept[0] < SAME_READ:
            meminfo = kept[1]
        else:
            meminfo = parse_meminfo(self._read(f"{self.proc}/meminfo"))
        return swap_from(meminfo, self._read(f"{self.proc}/vmstat"))

    def mounts(self) -> list[Mount]:
        """The mount table; the same list object while the table is
        unchanged (callers do not modify it), so the disk collector filters
        it again only when something was mounted or unmounted."""
        text = self._read(f"{self.proc}/self/mounts")
        if text != self._mount_text:
            self._mount_text, self._mounts = text, parse_mounts(text)
        return self._mounts

    def fs_usage(self, mountpoint: str) -> FsUsage:
        return statvfs_usage(mountpoint)

    def disk_io(self) -> dict[str, dict[str, float]]:
        return parse_diskstats(self._read(f"{self.proc}/diskstats"))

    def net_io(self) -> dict[str, dict[str, float]]:
        counters = parse_net_dev(self._read(f"{self.proc}/net/dev"))
        self._kinds.prune(counters)
        return counters

    def interface_kind(self, name: str) -> str:
        return self._kinds.get(name)

    def boot_time(self) -> float:
        if self._boot is None:  # fixed for the life of the host; read once
            self._boot = parse_stat(self._read(f"{self.proc}/stat"))[1]
        return self._boot

    def process_count(self) -> int:
        return sum(1 for name in os.listdir(self.proc) if name.isdigit())

    def open_files(self) -> tuple[int, int]:
        allocated, _unused, limit = self._read(f"{self.proc}/sys/fs/file-nr").split()
        return int(allocated), int(limit)


def default_source(procfs: str = "/proc", sysfs: str = "/sys") -> HostSource:
    """ProcfsSource on Linux, PsutilSource elsewhere."""
    if sys.platform.startswith("linux"):
        return ProcfsSource(procfs, sysfs)
    return PsutilSource(procfs, sysfs)
