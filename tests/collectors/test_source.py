"""PsutilSource against a recorded procfs (tests/fixtures/procfs, taken
from a Debian VM and edited to give distinct values), so the mapping from
the kernel's files to our fields is checked exactly."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from collectors.source import PsutilSource

FIXTURE = Path(__file__).parent.parent / "fixtures" / "procfs"
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def source():
    saved = psutil.PROCFS_PATH
    yield PsutilSource(str(FIXTURE), "/sys")
    psutil.PROCFS_PATH = saved


def test_cpu_times_all_and_per_cpu(source):
    cpus = source.cpu_times()
    assert set(cpus) == {"all", "0", "1"}
    assert cpus["all"]["user"] == pytest.approx(6691 / HZ)
    assert cpus["all"]["idle"] == pytest.approx(132856 / HZ)
    assert cpus["1"]["steal"] == pytest.approx(28 / HZ)


def test_network_directions_are_not_swapped(source):
    eth0 = source.net_io()["eth0"]
    assert eth0["receive_bytes"] == 86872010
    assert eth0["transmit_bytes"] == 237438
    assert (eth0["receive_errors"], eth0["receive_drops"]) == (3, 2)
    assert (eth0["transmit_errors"], eth0["transmit_drops"]) == (1, 4)


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
    swap = source.swap()
    assert swap["total"] == 1048576 * 1024 and swap["used"] == 524288 * 1024
    assert swap["sin"] == 10 * PAGE and swap["sout"] == 20 * PAGE
    assert source.open_files() == (100, 2466177)
    assert source.process_count() == 2


def test_mounts(source):
    mounts = {m.mountpoint: m for m in source.mounts()}
    assert mounts["/"].fstype == "ext4"
    assert mounts["/"].device == "/dev/vda"


def test_interface_kind_reads_sysfs(tmp_path):
    net = tmp_path / "class" / "net"
    devices = tmp_path / "devices"
    for name, where, flags in [("lo", "virtual/net/lo", "0x9"), ("veth1", "virtual/net/veth1", "0x1003"),
                               ("eth0", "pci0000:00/virtio2/net/eth0", "0x1003")]:  # fmt: skip
        (devices / where).mkdir(parents=True)
        (devices / where / "flags").write_text(flags + "\n")
        net.mkdir(parents=True, exist_ok=True)
        (net / name).symlink_to(devices / where)
    src = PsutilSource("/proc", str(tmp_path))
    assert src.interface_kind("lo") == "loopback"
    assert src.interface_kind("veth1") == "virtual"
    assert src.interface_kind("eth0") == "physical"
