"""Disk space and inodes per mounted file system."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import structlog

from agent.core.records import Metric, Record
from agent.core.schema import opt
from collectors.base import Collector, gauge, host_collector
from collectors.source import HostSource, Mount

log = structlog.get_logger("vigil.collectors.disk")

# Pseudo, in-memory and container layer file systems: their "space" is not
# something an operator provisions, and they multiply series on container hosts.
DEFAULT_EXCLUDE_FSTYPES = (
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "aufs",
    "iso9660",
)
DEFAULT_EXCLUDE_MOUNTS = (
    "/proc",
    "/proc/*",
    "/sys",
    "/sys/*",
    "/dev",
    "/dev/*",
    "/run/*",
    "/var/lib/docker/*",
    "/var/lib/containers/*",
    "/var/lib/kubelet/*",
    "/snap/*",
)


def _check_glob(pattern: str) -> str | None:
    return None if pattern else "must not be empty"


# File systems whose statvfs the kernel answers from the superblock in
# memory, never waiting on a device or a server: the disk collector asks them
# on the event loop. Any other type (nfs, cifs, fuse.*, ceph, 9p, ...) sends
# the run to a thread, where a hang is timed out; so do vfat and exfat, which
# count their free clusters by reading the whole FAT the first time.
MEMORY_FSTYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "f2fs", "squashfs"}
)  # fmt: skip

# kernel file systems with nothing to wait on: a path through them is safe
SAFE = MEMORY_FSTYPES | {
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "hugetlbfs", "configfs", "fusectl", "binfmt_misc", "efivarfs",
    "nsfs", "rpc_pipefs",
}  # fmt: skip


def _as_dir(mountpoint: str) -> str:
    """A prefix of the paths at and below `mountpoint`: /mnt/x -> /mnt/x/, / -> /."""
    return mountpoint.rstrip("/") + "/"


@dataclass(frozen=True)
class DiskConfig:
    exclude_fstypes: tuple[str, ...] = DEFAULT_EXCLUDE_FSTYPES
    exclude_mounts: tuple[str, ...] = opt(DEFAULT_EXCLUDE_MOUNTS, each=_check_glob)
    include_mounts: tuple[str, ...] = opt((), each=_check_glob)  # globs kept despite the above


@host_collector
class DiskCollector(Collector):
    name = "disk"
    Options = DiskConfig
    specs = (
        gauge("disk_total_bytes", "Size of the file system."),
        gauge("disk_free_bytes", "Space available to unprivileged users."),
        gauge("disk_used_bytes", "Space in use."),
        gauge("disk_used_percent", "Space in use as df shows it: used / (used + free)."),
        gauge("disk_inodes", "Inodes of the file system."),
        gauge("disk_inodes_free", "Inodes free."),
        gauge("disk_inodes_used_percent", "Share of inodes in use."),
    )

    def __init__(self, source: HostSource, config: DiskConfig | None = None) -> None:
        self.source = source
        self.config = config or DiskConfig()
        # The next run goes on the loop when the last one found every wanted
        # mount answered from memory; the first run is in the thread, so a
        # mount table that cannot even be read is timed out there.
        self._inline = False
        self._on_loop = False  # this run is on the loop (runs_inline said so)
        # the last table seen (a source returns the same list while nothing is
        # mounted or unmounted), its wanted mounts and which of those statvfs
        # answers from memory: the globs are matched once per change, not
        # each interval
        self._seen: tuple[list[Mount], list[Mount], set[str]] | None = None

    def _plan(self, mounts: list[Mount]) -> tuple[list[Mount], set[str]]:
        """The wanted mounts, and the mountpoints among them whose statvfs
        the kernel answers from memory without crossing, on the path, a
        mount that may wait (an excluded NFS mount above a local one)."""
        if self._seen is None or self._seen[0] is not mounts:
            seen: set[str] = set()
            wanted = []
            for m in mounts:
                if m.mountpoint not in seen and self.wanted(m.mountpoint, m.fstype):
                    seen.add(m.mountpoint)
                    wanted.append(m)
            waits = tuple(_as_dir(m.mountpoint) for m in mounts if m.fstype not in SAFE)
            # a mount that may wait at the mountpoint itself (mounted over
            # it: the one statvfs sees) or above it sends the run to the thread
            memory = {
                m.mountpoint
                for m in wanted
                if m.fstype in MEMORY_FSTYPES and not _as_dir(m.mountpoint).startswith(waits)
            }
            self._seen = (mounts, wanted, memory)
        return self._seen[1], self._seen[2]

    def runs_inline(self) -> bool:
        """On the loop while the last run found every wanted mount answered
        from memory (MEMORY_FSTYPES); in a thread, with its timeout, from the
        run after one found a mount that may wait on a server or a device
        (NFS, CIFS, FUSE, ...). No I/O here: decided on the last run's table."""
        self._on_loop = self._inline
        return self._inline

    def wanted(self, mountpoint: str, fstype: str) -> bool:
        cfg = self.config
        if any(fnmatch.fnmatchcase(mountpoint, g) for g in cfg.include_mounts):
            return True
        if fstype in cfg.exclude_fstypes:
            return False
        return not any(fnmatch.fnmatchcase(mountpoint, g) for g in cfg.exclude_mounts)

    def collect(self, ts: float, mono: float) -> list[Record]:
        out: list[Record] = []
        on_loop, self._on_loop = self._on_loop, False
        wanted, memory = self._plan(self.source.mounts())
        self._inline = len(memory) == len(wanted)
        for m in wanted:
            if on_loop and m.mountpoint not in memory:
                continue  # mounted since the last run: the next runs ask it, in the thread
            try:
                fs = self.source.fs_usage(m.mountpoint)
            except OSError as exc:  # stale NFS handle, permission: skip this mount only
                log.debug("statvfs_failed", mount=m.mountpoint, error=str(exc))
                continue
            if fs.total_bytes <= 0:
                continue
            labels = {"mount": m.mountpoint, "device": m.device, "fstype": m.fstype}
            avail = fs.used_bytes + fs.free_bytes
            out += [
                Metric("disk_total_bytes", fs.total_bytes, ts, labels),
                Metric("disk_free_bytes", fs.free_bytes, ts, labels),
                Metric("disk_used_bytes", fs.used_bytes, ts, labels),
                Metric(
                    "disk_used_percent", 100.0 * fs.used_bytes / avail if avail else 0.0, ts, labels
                ),
            ]
            if fs.inodes_total > 0:  # btrfs and some network file systems report none
                used = fs.inodes_total - fs.inodes_free
                out += [
                    Metric("disk_inodes", fs.inodes_total, ts, labels),
                    Metric("disk_inodes_free", fs.inodes_free, ts, labels),
                    Metric("disk_inodes_used_percent", 100.0 * used / fs.inodes_total, ts, labels),
                ]
        return out
