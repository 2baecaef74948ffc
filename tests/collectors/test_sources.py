"""Both real HostSources, ProcfsSource (the default on Linux) and
PsutilSource (the reference), run through one behavioural suite against a
recorded procfs (tests/fixtures/procfs, taken from a Debian VM and edited
to give distinct values), then compared with each other on this host's
live /proc. The pure procfs parsers are tested with literal inputs."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from collectors import procfs
from collectors.procfs import ProcfsSource
from collectors.source import PsutilSource, read
from tests.conftest import wait_for

FIXTURE = Path(__file__).parent.parent / "fixtures" / "procfs"
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(params=["procfs", "psutil"])
def source(request):
    saved = psutil.PROCFS_PATH
    if request.param == "procfs":
        yield ProcfsSource(str(FIXTURE), "/sys")
    else:
        yield PsutilSource(str(FIXTURE), "/sys")
    psutil.PROCFS_PATH = saved


def test_cpu_times_all_and_per_cpu(source):
    cpus = source.cpu_times()
    assert set(cpus) == {"all", "0", "1"}
    assert cpus["all"]["user"] == pytest.approx(6691 / HZ)
    assert cpus["all"]["idle"] == pytest.approx(132856 / HZ)
    assert cpus["1"]["steal"] == pytest.approx(28 / HZ)
    assert set(cpus["0"]) == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}


def test_network_directions_are_not_swapped(source):
    eth0 = source.net_io()["eth0"]
    assert eth0["receive_bytes"] == 86872010
    assert eth0["transmit_bytes"] == 237438
    assert (eth0["receive_errors"], eth0["receive_drops"]) == (3, 2)
    assert (eth0["transmit_errors"], eth0["transmit_drops"]) == (1, 4)
    assert set(source.net_io()) == {"lo", "ifb0", "ifb1", "eth0"}


def test_disk_io_bytes_and_busy_time(source):
    vda = source.disk_io()["vda"]
    assert vda["reads"] == 27454 and vda["writes"] == 4371
    assert vda["read_bytes"] == 1179634 * 512
    assert vda["write_bytes"] == 1342408 * 512
    assert vda["busy_seconds"] == pytest.approx(2.396)


def test_memory_swap_files_and_processes(source):
    mem = source.memory()
    assert mem["total"] == 24684092 * 1024
    assert mem["available"] == 24343012 * 1024
    assert mem["used"] == mem["total"] - mem["available"]
    assert mem["buffers"] == 53124 * 1024
    swap = source.swap()
    assert swap["total"] == 1048576 * 1024 and swap["used"] == 524288 * 1024
    assert swap["sin"] == 10 * PAGE and swap["sout"] == 20 * PAGE
    assert source.open_files() == (100, 2466177)
    assert source.process_count() == 2


def test_boot_time_and_mounts(source):
    assert source.boot_time() == 1795702151
    mounts = {m.mountpoint: m for m in source.mounts()}
    assert mounts["/"].fstype == "ext4"
    assert mounts["/proc"].fstype == "proc"


def test_both_sources_agree_on_this_host():
    saved = psutil.PROCFS_PATH
    try:
        ours, ref = ProcfsSource(), PsutilSource()
        assert ours.memory()["total"] == ref.memory()["total"]
        assert ours.swap()["total"] == ref.swap()["total"]
        assert set(ours.cpu_times()) == set(ref.cpu_times())
        assert ours.cpu_count() == ref.cpu_count()
        assert set(ours.disk_io()) == set(ref.disk_io())
        assert set(ours.net_io()) == set(ref.net_io())
        assert {m.mountpoint for m in ours.mounts()} == {m.mountpoint for m in ref.mounts()}
        assert ours.boot_time() == pytest.approx(ref.boot_time(), abs=1)
        assert ours.open_files()[1] == ref.open_files()[1]
    finally:
        psutil.PROCFS_PATH = saved


def test_interface_kind_reads_sysfs(tmp_path):
    net = tmp_path / "class" / "net"
    devices = tmp_path / "devices"
    for name, where, flags in [
        ("lo", "virtual/net/lo", "0x9"),
        ("veth1", "virtual/net/veth1", "0x1003"),
        ("eth0", "pci0000:00/virtio2/net/eth0", "0x1003"),
    ]:
        (devices / where).mkdir(parents=True)
        (devices / where / "flags").write_text(flags + "\n")
        net.mkdir(parents=True, exist_ok=True)
        (net / name).symlink_to(devices / where)
    for src in (ProcfsSource("/proc", str(tmp_path)), PsutilSource("/proc", str(tmp_path))):
        assert src.interface_kind("lo") == "loopback"
        assert src.interface_kind("veth1") == "virtual"
        assert src.interface_kind("eth0") == "physical"


# -- the pure parsers, with literal inputs -------------------------------------


def test_parse_stat():
    cpus, boot = procfs.parse_stat(
        "cpu  10 20 30 40 50 60 70 80 90 100\ncpu0 10 20 30 40 50 60 70 80 90 100\n"
        "intr 1 2 3\nbtime 1700000000\nprocesses 42\n"
    )
    assert boot == 1700000000.0
    assert cpus["all"]["steal"] == 80 / HZ and cpus["0"]["user"] == 10 / HZ
    assert "guest" not in cpus["all"]  # already counted in user


def test_parse_stat_old_kernel_without_steal():
    cpus, _ = procfs.parse_stat("cpu  1 2 3 4 5 6 7\n")
    assert set(cpus["all"]) == {"user", "nice", "system", "idle", "iowait", "irq", "softirq"}


def test_memory_from_meminfo_without_memavailable():
    info = procfs.parse_meminfo(
        "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n"
        "SReclaimable: 50 kB\nHugePages_Total: 0\n"
    )
    assert info["HugePages_Total"] == 0
    mem = procfs.memory_from(info)
    assert mem["cached"] == 250 * 1024
    assert mem["available"] == 400 * 1024  # free + buffers + cached, as free(1) did
    assert mem["used"] == 600 * 1024


def test_swap_counters_from_vmstat():
    info = {"SwapTotal": 4096, "SwapFree": 1024}
    swap = procfs.swap_from(info, "nr_free_pages 5\npswpin 7\npswpout 9\npgfault 1\n")
    assert swap == {"total": 4096, "used": 3072, "free": 1024, "sin": 7 * PAGE, "sout": 9 * PAGE}
    assert procfs.swap_from({}, "pswpin 3\n")["sin"] == 3 * PAGE


def test_parse_diskstats_variants_and_garbage():
    text = (
        "   8       0 sda 100 0 200 0 300 0 400 0 0 500 0\n"  # 14 fields (Linux 2.6-4.17)
        " 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n"  # 20 fields
    )
    stats = procfs.parse_diskstats(text)
    assert stats["sda"] == {
        "reads": 100,
        "writes": 300,
        "read_bytes": 200 * 512,
        "write_bytes": 400 * 512,
        "busy_seconds": 0.5,
    }
    assert stats["nvme0n1"]["busy_seconds"] == 0.01
    with pytest.raises(ValueError, match="diskstats"):
        procfs.parse_diskstats("this is not\n")


def test_parse_net_dev():
    text = (
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
        "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        "wlan0:100 0 0 0 0 0 0 0 200 0 0 0 0 0 0 0\n"
    )
    nics = procfs.parse_net_dev(text)
    assert nics["eth0"]["receive_drops"] == 4 and nics["eth0"]["transmit_bytes"] == 9
    assert nics["eth0"]["transmit_drops"] == 12
    assert nics["wlan0"]["receive_bytes"] == 100  # no space after the colon


def test_parse_mounts_unescapes_paths():
    mounts = procfs.parse_mounts(
        "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n"
        "server:/x /mnt/caf\\303\\251 nfs4 rw 0 0\n"
    )
    assert [m.mountpoint for m in mounts] == ["/", "/mnt/my disk", "/mnt/café"]


def test_count_cpu_list():
    assert procfs.count_cpu_list("0\n") == 1
    assert procfs.count_cpu_list("0-3,8,10-11\n") == 7


def test_kept_files_read_the_kernels_text_afresh_with_one_descriptor_each(tmp_path):
    """procfs files are kept open and read with pread at offset 0: each read
    sees the text of now, a file over one pread's size is read whole, the
    descriptors stay as many as the files (none leaks per read), and a
    file that is gone raises for the caller."""
    from collectors.source import KeptFiles

    kept = KeptFiles()
    fds = len(os.listdir("/proc/self/fd"))
    first = kept.read("/proc/self/stat")
    for _ in range(200):
        kept.read("/proc/self/stat")
        kept.read("/proc/meminfo")
    assert len(os.listdir("/proc/self/fd")) == fds + 2
    # rchar: the bytes this process read, so far, which the reads above moved on
    io = [kept.read("/proc/self/io") for _ in range(2)]
    assert io[0] != io[1] and io[1].startswith("rchar: ")
    assert kept.read("/proc/self/stat").split()[:3] == first.split()[:3]
    # a file of many lines comes about a page a read, cut at a line's end
    assert kept.read("/proc/self/maps").count("\n") == read("/proc/self/maps").count("\n")
    assert len(read("/proc/self/maps")) > 4096  # else the line above proves nothing
    big = tmp_path / "big"
    big.write_text("x" * (3 * KeptFiles.SIZE + 17))
    assert kept.read(str(big)) == "x" * (3 * KeptFiles.SIZE + 17)
    gone = tmp_path / "gone"
    with pytest.raises(OSError):
        kept.read(str(gone))
    kept.close()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_the_mount_table_is_parsed_and_filtered_again_only_when_it_changes(tmp_path):
    """A host mounts rarely: the same table gives the same list, which the
    disk collector filters once; a mount added is seen at the next run."""
    from collectors.disk import DiskCollector

    (tmp_path / "self").mkdir()
    table = tmp_path / "self" / "mounts"
    table.write_text("/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n")
    source = ProcfsSource(str(tmp_path), str(tmp_path))
    first = source.mounts()
    assert source.mounts() is first and [m.mountpoint for m in first] == ["/", "/proc"]
    disk = DiskCollector(source)
    calls = []
    wanted = disk.wanted
    disk.wanted = lambda mount, fstype: calls.append(mount) or wanted(mount, fstype)  # type: ignore[method-assign]
    disk.collect(0.0, 0.0)
    disk.collect(0.0, 0.0)
    assert calls == ["/", "/proc"] and disk.runs_inline()  # once for the unchanged table
    with table.open("a") as f:  # in place: the source keeps the file open
        f.write("srv:/export /mnt/nfs nfs4 rw 0 0\n")
    disk.collect(0.0, 0.0)
    assert not disk.runs_inline()  # an NFS mount: the next run goes to a thread
    assert calls == ["/", "/proc", "/", "/proc", "/mnt/nfs"]
    source.close()


def test_a_read_stuck_in_one_thread_does_not_stop_reads_of_other_files(tmp_path):
    """The disk collector's thread may hang on its mount table (a FIFO here,
    a dead mount in life): the loop's reads of the other files go on."""
    import contextlib
    import threading

    from collectors.source import KeptFiles

    kept = KeptFiles()
    fifo = tmp_path / "mounts"
    os.mkfifo(fifo)
    ended: list[BaseException] = []

    def stuck_read() -> None:
        try:
            kept.read(str(fifo))
        except OSError as exc:  # a FIFO cannot be pread: how this one ends
            ended.append(exc)

    stuck = threading.Thread(target=stuck_read, daemon=True)
    stuck.start()
    try:
        # the stuck reader holds its file's lock before the others read
        wait_for(lambda: str(fifo) in kept._locks and kept._locks[str(fifo)].locked())
        other: list[str] = []  # the loop's reads, in a thread so a failure cannot hang
        loop = threading.Thread(
            target=lambda: other.extend(kept.read("/proc/self/stat") for _ in range(3)),
            daemon=True,
        )
        loop.start()
        loop.join(10)
        assert len(other) == 3, "the other file's reads waited behind the stuck one"
        assert stuck.is_alive() and ended == []
    finally:
        while stuck.is_alive():  # each open for writing lets one open for reading return
            # non-blocking: never wait for a reader that has gone (ENXIO)
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            stuck.join(0.05)
    assert len(ended) == 1
    kept.close()
