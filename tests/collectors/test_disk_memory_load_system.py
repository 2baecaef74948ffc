import errno

import pytest

from collectors.disk import DiskCollector, DiskConfig
from collectors.load import LoadCollector
from collectors.memory import MemoryCollector
from collectors.source import FsUsage, Mount
from collectors.system import SystemCollector
from tests.collectors.fakes import RecordedSource, by_key

GiB = 1024**3


def test_disk_space_inodes_and_filters():
    src = RecordedSource(
        mounts=[
            [
                Mount("/dev/sda1", "/", "ext4"),
                Mount("/dev/sda1", "/", "ext4"),  # listed twice (bind, namespace): once
                Mount("tmpfs", "/dev/shm", "tmpfs"),
                Mount("overlay", "/var/lib/docker/overlay2/x/merged", "overlay"),
                Mount("/dev/loop3", "/snap/core/1", "squashfs"),
                Mount("/dev/sdb1", "/data", "btrfs"),
                Mount("nfs:/export", "/mnt/nfs", "nfs4"),
            ]
        ]
    )
    src.fs = {
        "/": FsUsage(100 * GiB, 20 * GiB, 75 * GiB, 1000, 250),
        "/data": FsUsage(10 * GiB, 5 * GiB, 5 * GiB, 0, 0),
        "/mnt/nfs": OSError(errno.ESTALE, "Stale file handle"),
    }
    out = DiskCollector(src).collect(0.0, 0.0)
    got = by_key(out)
    root = (("device", "/dev/sda1"), ("fstype", "ext4"), ("mount", "/"))
    assert got[("disk_used_percent", root)] == pytest.approx(100 * 75 / 95)  # as df computes
    assert got[("disk_free_bytes", root)] == 20 * GiB
    assert got[("disk_inodes_used_percent", root)] == pytest.approx(75.0)
    assert {r.labels["mount"] for r in out} == {"/", "/data"}
    assert len([r for r in out if r.name == "disk_total_bytes"]) == 2
    data = [r for r in out if r.labels["mount"] == "/data"]
    assert not any(r.name.startswith("disk_inodes") for r in data)  # btrfs reports no inodes


def test_disk_filters_are_configurable():
    src = RecordedSource(
        mounts=[[Mount("tmpfs", "/run/user/0", "tmpfs"), Mount("x", "/srv", "xfs")]]
    )
    src.fs = {"/run/user/0": FsUsage(10, 5, 5, 10, 5), "/srv": FsUsage(10, 5, 5, 10, 5)}
    assert {r.labels["mount"] for r in DiskCollector(src).collect(0, 0)} == {"/srv"}
    cfg = DiskConfig(include_mounts=("/run/user/*",), exclude_mounts=("/srv",))
    assert {r.labels["mount"] for r in DiskCollector(src, cfg).collect(0, 0)} == {"/run/user/0"}


def test_memory_and_swap():
    src = RecordedSource(
        memory=[
            {
                "total": 16 * GiB,
                "available": 4 * GiB,
                "used": 10 * GiB,
                "free": 1 * GiB,
                "cached": 4 * GiB,
                "buffers": 1 * GiB,
            }
        ],
        swap=[{"total": 0, "used": 0, "free": 0, "sin": 0, "sout": 0}],
    )
    got = by_key(MemoryCollector(src).collect(0, 0))
    assert got[("memory_used_percent", ())] == pytest.approx(75.0)
    assert got[("memory_available_bytes", ())] == 4 * GiB
    assert got[("swap_used_percent", ())] == 0.0  # no swap: 0, not a division error


def test_load_per_cpu():
    src = RecordedSource(load_average=[(4.0, 2.0, 1.0)], cpu_count=[4])
    got = by_key(LoadCollector(src).collect(0, 0))
    assert got[("load_average", (("period", "1m"),))] == 4.0
    assert got[("load_average_per_cpu", (("period", "1m"),))] == 1.0
    assert got[("load_average_per_cpu", (("period", "15m"),))] == 0.25


def test_system():
    src = RecordedSource(boot_time=[1000.0], process_count=[312], open_files=[(2048, 100000)])
    got = by_key(SystemCollector(src).collect(4600.0, 0))
    assert got[("system_uptime_seconds", ())] == 3600.0
    assert got[("system_processes", ())] == 312
    assert got[("system_open_files", ())] == 2048
    assert got[("system_open_files_limit", ())] == 100000


def test_disk_runs_on_the_loop_only_when_no_statvfs_can_wait():
    """The first run is in the thread; the next ones go on the loop only if
    it found every wanted file system answered from memory and no path to
    one crossing a mount that may wait (an excluded NFS mount above a local
    one still does); kernel file systems on the way are fine. A network
    mount that appears while on the loop is left out of that one run."""
    from collectors.disk import DiskCollector, DiskConfig
    from collectors.source import FsUsage, Mount

    def inline(*mounts, **config):
        source = RecordedSource(mounts=[list(mounts)])
        source.fs = {m.mountpoint: FsUsage(100, 40, 60, 10, 5) for m in mounts}
        disk = DiskCollector(source, DiskConfig(**config))
        assert not disk.runs_inline()  # nothing known yet
        disk.collect(0.0, 0.0)
        return disk.runs_inline()

    root, data = Mount("/dev/sda1", "/", "ext4"), Mount("/dev/sdb1", "/data", "xfs")
    assert inline(root, Mount("udev", "/dev", "devtmpfs"), data)
    assert not inline(root, Mount("srv:/x", "/mnt/x", "nfs4"))
    assert inline(root, Mount("srv:/x", "/mnt/x", "nfs4"), exclude_fstypes=("nfs4",))
    nested = Mount("/dev/sdc1", "/mnt/x/local", "ext4")
    assert not inline(root, Mount("srv:/x", "/mnt/x", "nfs4"), nested, exclude_fstypes=("nfs4",))
    assert not inline(root, Mount("/dev/sdd1", "/media/usb", "vfat"))  # reads the FAT once
    # NFS mounted over a local mountpoint: statvfs sees the NFS one
    assert not inline(root, Mount("/dev/sdb1", "/mnt/x", "ext4"), Mount("srv:/x", "/mnt/x", "nfs4"))

    nfs = Mount("srv:/x", "/mnt/x", "nfs4")
    source = RecordedSource(mounts=[[root], [root, nfs], [root, nfs]])
    source.fs = {"/": FsUsage(100, 40, 60, 10, 5), "/mnt/x": FsUsage(100, 40, 60, 10, 5)}
    disk = DiskCollector(source)
    disk.collect(0.0, 0.0)
    source.step()
    assert disk.runs_inline()  # on the loop: the NFS mount appeared meanwhile
    assert {r.labels["mount"] for r in disk.collect(0.0, 0.0)} == {"/"}
    source.step()
    assert not disk.runs_inline()  # in the thread, where it is asked
    assert {r.labels["mount"] for r in disk.collect(0.0, 0.0)} == {"/", "/mnt/x"}
