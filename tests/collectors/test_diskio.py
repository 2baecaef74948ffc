import pytest

from collectors.diskio import DiskIOCollector, DiskIOConfig
from tests.collectors.fakes import RecordedSource, by_key


def dev(reads, writes, rbytes, wbytes, busy):
    return {
        "reads": reads,
        "writes": writes,
        "read_bytes": rbytes,
        "write_bytes": wbytes,
        "busy_seconds": busy,
    }


def test_rates_and_busy_percent():
    src = RecordedSource(
        disk_io=[{"sda": dev(100, 50, 4096, 8192, 1.0)}, {"sda": dev(200, 70, 413696, 90112, 3.5)}]
    )
    c = DiskIOCollector(src)
    c.collect(0.0, 0.0)
    src.step()
    out = by_key(c.collect(10.0, 10.0))
    sda = (("device", "sda"),)
    assert out[("disk_reads_per_second", sda)] == pytest.approx(10.0)
    assert out[("disk_writes_per_second", sda)] == pytest.approx(2.0)
    assert out[("disk_read_bytes_per_second", sda)] == pytest.approx(40960.0)
    assert out[("disk_written_bytes_per_second", sda)] == pytest.approx(8192.0)
    assert out[("disk_busy_percent", sda)] == pytest.approx(25.0)
    assert out[("disk_io_time_seconds_total", sda)] == 3.5


def test_busy_percent_is_capped_at_100_when_accounting_runs_ahead():
    src = RecordedSource(disk_io=[{"sda": dev(0, 0, 0, 0, 0.0)}, {"sda": dev(0, 0, 0, 0, 10.3)}])
    c = DiskIOCollector(src)
    c.collect(0.0, 0.0)
    src.step()
    assert by_key(c.collect(10.0, 10.0))[("disk_busy_percent", (("device", "sda"),))] == 100.0


def test_disk_that_disappears_and_returns_reset_gives_no_bogus_rate():
    src = RecordedSource(
        disk_io=[
            {"sda": dev(10, 10, 10, 10, 1), "sdb": dev(500, 500, 5000, 5000, 5)},
            {"sda": dev(20, 20, 20, 20, 2)},
            {"sda": dev(30, 30, 30, 30, 3), "sdb": dev(1, 1, 1, 1, 0)},
        ]
    )
    c = DiskIOCollector(src)
    outs = []
    for i in range(3):
        outs.append(by_key(c.collect(float(i), float(i))))
        src.step()
    assert not any(labels == (("device", "sdb"),) for _, labels in outs[1])
    assert not any(
        name.endswith("per_second") and labels == (("device", "sdb"),) for name, labels in outs[2]
    )
    assert all(v >= 0 for out in outs for v in out.values())


def test_partitions_and_loop_devices_excluded_by_default():
    names = ["sda", "sda1", "nvme0n1", "nvme0n1p2", "loop0", "dm-0", "vda", "vda1", "mmcblk0p1"]
    src = RecordedSource(disk_io=[{n: dev(0, 0, 0, 0, 0) for n in names}])
    got = {r.labels["device"] for r in DiskIOCollector(src).collect(0.0, 0.0)}
    assert got == {"sda", "nvme0n1", "dm-0", "vda"}
    cfg = DiskIOConfig(include_devices=("^loop0$",))
    got = {r.labels["device"] for r in DiskIOCollector(src, cfg).collect(0.0, 0.0)}
    assert "loop0" in got
