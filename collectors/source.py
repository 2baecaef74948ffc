"""Where host collectors read the system from.

Collectors never read the system themselves: they take a `HostSource`, so
tests drive them with recorded values step by step (a counter that wraps, a
CPU that disappears). Two real sources: `ProcfsSource` (collectors/procfs.py)
reads Linux's procfs directly and is the default on Linux, for its small
footprint; `PsutilSource` here works wherever psutil does and is the
reference the procfs one is tested against. Every method returns plain
numbers in base units (bytes, seconds) keyed by name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# psutil's Linux cpu_times: guest and guest_nice are already counted in user
# and nice by the kernel, so they are left out of totals.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True, slots=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str


@dataclass(frozen=True, slots=True)
class FsUsage:
    total_bytes: int
    free_bytes: int  # available to unprivileged users, as df shows
    used_bytes: int
    inodes_total: int
    inodes_free: int


class HostSource(Protocol):
    def cpu_times(self) -> dict[str, dict[str, float]]:
        """Seconds per mode, keyed by "all" and by CPU number ("0", "1", ...)."""

    def cpu_count(self) -> int: ...

    def load_average(self) -> tuple[float, float, float]: ...

    def memory(self) -> dict[str, float]:
        """total, available, used, free, cached, buffers (bytes)."""

    def swap(self) -> dict[str, float]:
        """total, used, free, sin, sout (bytes)."""

    def mounts(self) -> list[Mount]: ...

    def fs_usage(self, mountpoint: str) -> FsUsage: ...

    def disk_io(self) -> dict[str, dict[str, float]]:
        """Per device: reads, writes, read_bytes, write_bytes, busy_seconds."""

    def net_io(self) -> dict[str, dict[str, float]]:
        """Per interface: {receive,transmit}_{bytes,packets,errors,drops}."""

    def interface_kind(self, name: str) -> str:
        """ "loopback", "virtual" or "physical"."""

    def boot_time(self) -> float: ...

    def process_count(self) -> int: ...

    def open_files(self) -> tuple[int, int]:
        """System-wide allocated file handles and the limit."""


class PsutilSource:
    """The real host, read through psutil and a few /proc and /sys files."""

    def __init__(self, procfs: str = "/proc", sysfs: str = "/sys") -> None:
        import psutil  # here: the procfs source (Linux) never needs it

        self._ps = psutil
        self.proc, self.sys = str(procfs), str(sysfs)
        # psutil reads every system-wide file under this one module setting.
        self._ps.PROCFS_PATH = self.proc
        self._kinds = InterfaceKinds(self.sys)

    def cpu_times(self) -> dict[str, dict[str, float]]:
        result = {"all": _modes(self._ps.cpu_times())}
        for i, times in enumerate(self._ps.cpu_times(percpu=True)):
            result[str(i)] = _modes(times)
        return result

    def cpu_count(self) -> int:
        return self._ps.cpu_count() or 1

    def load_average(self) -> tuple[float, float, float]:
        return os.getloadavg()

    def memory(self) -> dict[str, float]:
        vm = self._ps.virtual_memory()
        return {
            "total": vm.total,
            "available": vm.available,
            "used": vm.total - vm.available,  # as psutil 7 does; older releases differ
            "free": vm.free,
            "cached": getattr(vm, "cached", 0),
            "buffers": getattr(vm, "buffers", 0),
        }

    def swap(self) -> dict[str, float]:
        sw = self._ps.swap_memory()
        return {"total": sw.total, "used": sw.used, "free": sw.free, "sin": sw.sin, "sout": sw.sout}

    def mounts(self) -> list[Mount]:
        return [Mount(p.device, p.mountpoint, p.fstype) for p in self._ps.disk_partitions(all=True)]

    def fs_usage(self, mountpoint: str) -> FsUsage:
        return statvfs_usage(mountpoint)

    def disk_io(self) -> dict[str, dict[str, float]]:
        counters = self._ps.disk_io_counters(perdisk=True, nowrap=False) or {}
        return {
            dev: {
                "reads": c.read_count,
                "writes": c.write_count,
                "read_bytes": c.read_bytes,
                "write_bytes": c.write_bytes,
                "busy_seconds": getattr(c, "busy_time", 0) / 1000.0,
            }
            for dev, c in counters.items()
        }

    def net_io(self) -> dict[str, dict[str, float]]:
        counters = self._ps.net_io_counters(pernic=True, nowrap=False) or {}
        self._kinds.prune(counters)
        return {
            nic: {
                "receive_bytes": c.bytes_recv,
                "transmit_bytes": c.bytes_sent,
                "receive_packets": c.packets_recv,
                "transmit_packets": c.packets_sent,
                "receive_errors": c.errin,
                "transmit_errors": c.errout,
                "receive_drops": c.dropin,
                "transmit_drops": c.dropout,
            }
            for nic, c in counters.items()
        }

    def interface_kind(self, name: str) -> str:
        return self._kinds.get(name)

    def boot_time(self) -> float:
        return float(self._ps.boot_time())

    def process_count(self) -> int:
        return len(self._ps.pids())

    def open_files(self) -> tuple[int, int]:
        allocated, _unused, limit = read(f"{self.proc}/sys/fs/file-nr").split()
        return int(allocated), int(limit)


def _modes(times: object) -> dict[str, float]:
    return {mode: getattr(times, mode) for mode in CPU_MODES if hasattr(times, mode)}


def read(path: str) -> str:
    """A whole procfs or sysfs file. The kernel makes these from memory, so
    reading one never waits on storage: procfs collectors do it on the loop.
    Raw os calls: three system calls a file where open() makes seven."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


class KeptFiles:
    """procfs and sysfs files read every interval, each kept open and read
    with `pread` from offset 0: the kernel makes the text afresh for each
    read from the start, and two system calls a file (a read, and the empty
    one that ends it) replace four (open, read, read to the end, close). A
    file that fails (gone, a namespace change) is opened again once;
    `close` lets go of them all."""

    SIZE = 65536

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        # One lock per file: the loop reads, and a disk run in a worker thread
        # may read the mounts at the same time; a file is never closed (its
        # number reused) under another reader. Per file, because a read stuck
        # in the thread (a mount table that never answers) must not stop the
        # loop's reads of the other files.
        self._locks: dict[str, threading.Lock] = {}

    def read(self, path: str) -> str:
        with self._locks.setdefault(path, threading.Lock()):
            try:
                return self._read(path)
            except OSError:
                self._forget(path)
                return self._read(path)  # opened afresh; a second failure is the caller's

    def _read(self, path: str) -> str:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        # Read on to an empty read: files of many lines (mounts, diskstats,
        # net/dev) give about a page a read, cut at a line's end, so a short
        # read is not the end.
        chunks, at = [], 0
        while chunk := os.pread(fd, self.SIZE, at):
            chunks.append(chunk)
            at += len(chunk)
        return b"".join(chunks).decode("ascii", "replace")

    def _forget(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for path in list(self._fds):
            lock = self._locks.setdefault(path, threading.Lock())
            if lock.acquire(blocking=False):  # a reader stuck on it keeps its file
                try:
                    self._forget(path)
                finally:
                    lock.release()

    def __del__(self) -> None:  # a source dropped without close (tests, one-shot commands)
        self.close()


def statvfs_usage(mountpoint: str) -> FsUsage:
    st = os.statvfs(mountpoint)
    return FsUsage(
        total_bytes=st.f_blocks * st.f_frsize,
        free_bytes=st.f_bavail * st.f_frsize,
        used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
        inodes_total=st.f_files,
        inodes_free=st.f_ffree,
    )


class InterfaceKinds:
    """Each interface's kind, read from sysfs once: an interface keeps its kind
    for its lifetime. `prune` forgets the gone, so container churn (veth
    pairs come and go) cannot grow the cache."""

    def __init__(self, sysfs: str) -> None:
        self.sysfs = sysfs
        self._kinds: dict[str, str] = {}

    def get(self, name: str) -> str:
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._kinds[name] = interface_kind_from_sysfs(self.sysfs, name)
        return kind

    def prune(self, present: Iterable[str]) -> None:
        keep = set(present)
        self._kinds = {n: k for n, k in self._kinds.items() if n in keep}


def interface_kind_from_sysfs(sysfs: str, name: str) -> str:
    try:
        if int(read(f"{sysfs}/class/net/{name}/flags").strip(), 16) & 0x8:  # IFF_LOOPBACK
            return "loopback"
        target = os.readlink(f"{sysfs}/class/net/{name}")
    except OSError:
        return "loopback" if name == "lo" else "physical"
    return "virtual" if "/devices/virtual/" in target else "physical"
