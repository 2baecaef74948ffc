"""The supervisor: errors, hangs, overlap, backoff and clock jumps, with
real threads and a real (uv)loop; collectors here are tiny stand-ins."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import uvloop

from agent import scheduler
from agent.core.records import Metric
from agent.scheduler import CollectorStats, Schedule
from collectors.base import Collector


class Recorder(Collector):
    """Counts calls and concurrent entries; behaviour per call from `plan`."""

    name = "recorder"

    def __init__(self, plan=None):
        self.plan = plan or (lambda n: None)
        self.calls: list[float] = []
        self.wall: list[float] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def collect(self, ts, mono):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append(time.monotonic())
            self.wall.append(ts)
            n = len(self.calls)
        try:
            self.plan(n)
            return [Metric("x", n, ts)]
        finally:
            with self.lock:
                self.active -= 1


async def run_until(schedules, condition, timeout=10.0):
    tasks = [asyncio.create_task(s.run()) for s in schedules]
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail("condition not reached")
            await asyncio.sleep(0.01)
    finally:
        for t in tasks:
            t.cancel()
        # a schedule that ignored its cancellation would otherwise hang the test
        _, pending = await asyncio.wait(tasks, timeout=5)
        assert not pending, "a schedule did not stop when cancelled"


def make(collector, interval=0.05, timeout=1.0, jitter=0.0, sink=None):
    received = []
    s = Schedule(
        collector,
        interval,
        timeout,
        jitter,
        sink or (lambda n, r: received.append(r)),
        CollectorStats(),
    )
    s.received = received
    return s


def test_raising_collector_is_counted_retried_with_backoff_and_others_keep_running():
    def boom(n):
        raise RuntimeError(f"broken #{n}")

    bad, good = make(Recorder(boom), interval=0.02), make(Recorder(), interval=0.02)
    # errors, not calls: the 5th call may have raised without being counted yet
    uvloop.run(run_until([bad, good], lambda: bad.stats.errors >= 5))
    assert bad.stats.errors == bad.stats.runs >= 5
    assert bad.stats.last_error == f"RuntimeError: broken #{bad.stats.runs}"
    assert bad.received == []
    gaps = [b - a for a, b in zip(bad.collector.calls, bad.collector.calls[1:])]
    # 1, 2, 4, 8 intervals apart: each retry waits longer than the last. The
    # first gap is to the next slot on the grid, which a late first run shortens.
    for i, gap in enumerate(gaps[1:], 1):
        assert gap >= 0.02 * 2**i - 0.01, gaps  # 10 ms for a late start under load
    assert len(good.received) > len(bad.collector.calls)
    assert good.stats.errors == 0


def test_backoff_factor_doubles_and_is_capped():
    s = make(Recorder(), interval=10.0)
    factors = []
    for failures in range(0, 10):
        s.stats.failures_in_a_row = failures
        factors.append(s._backoff_factor())
    assert factors == [1, 1, 2, 4, 8, 16, 30, 30, 30, 30]  # capped at 300s / 10s


def test_recovery_resets_the_failure_count():
    flaky = make(Recorder(lambda n: n <= 2 and (_ for _ in ()).throw(OSError("transient"))))
    uvloop.run(run_until([flaky], lambda: len(flaky.received) >= 2))
    assert flaky.stats.errors == 2
    assert flaky.stats.failures_in_a_row == 0
    assert flaky.stats.last_success is not None


def test_hung_collector_times_out_never_overlaps_and_resumes_when_unblocked():
    release = threading.Event()

    def hang_first(n):
        if n == 1:
            release.wait(30)

    hung, good = make(Recorder(hang_first), timeout=0.1), make(Recorder())

    async def scenario():
        await run_until([hung, good], lambda: hung.stats.timeouts == 1 and hung.stats.overruns >= 5)
        assert len(hung.collector.calls) == 1  # slots skipped while its thread is stuck
        assert hung.stuck
        release.set()
        await run_until([hung], lambda: len(hung.received) >= 2)

    uvloop.run(scenario())
    assert hung.collector.max_active == 1
    assert good.stats.errors == good.stats.timeouts == 0 and len(good.received) >= 5
    assert not hung.stuck


def test_slow_run_skips_missed_slots_instead_of_bursting():
    slow = make(Recorder(lambda n: time.sleep(0.12)), interval=0.05)
    uvloop.run(run_until([slow], lambda: len(slow.received) >= 4))
    gaps = [b - a for a, b in zip(slow.collector.calls, slow.collector.calls[1:])]
    assert min(gaps) >= 0.12  # never two runs back to back to "catch up"
    assert slow.stats.overruns >= 4
    assert slow.collector.max_active == 1


def test_async_collector_that_hangs_is_cancelled_at_its_timeout():
    class Hanging(Collector):
        name = "hanging"
        blocking = False

        async def collect(self, ts, mono):
            await asyncio.sleep(3600)

    s = make(Hanging(), timeout=0.05)
    uvloop.run(run_until([s], lambda: s.stats.timeouts >= 2))
    assert s.stats.last_error == "timed out after 0.05s"
    assert not s.stuck  # cancelled, not abandoned


def test_wall_clock_jumps_neither_stall_nor_burst(monkeypatch):
    offset = {"value": 0.0}
    real_time = time.time
    monkeypatch.setattr(scheduler.time, "time", lambda: real_time() + offset["value"])
    rec = Recorder()

    def jump(n):
        if n == 3:
            offset["value"] = -3600.0  # clock set back an hour
        if n == 6:
            offset["value"] = +7200.0  # then forward two

    rec.plan = jump
    s = make(rec, interval=0.05)
    uvloop.run(run_until([s], lambda: len(rec.calls) >= 10))
    gaps = [b - a for a, b in zip(rec.calls, rec.calls[1:])]
    assert min(gaps) >= 0.04  # no burst after the jump forward
    assert max(gaps) < 1.0  # no stall after the jump back
    assert rec.wall[3] < rec.wall[2] - 3000  # records carry the (jumped) wall clock


def test_jitter_delays_each_run_within_bounds():
    rec = Recorder()
    s = make(rec, interval=0.05, jitter=0.04)
    s.rng.seed(7)
    uvloop.run(run_until([s], lambda: len(rec.calls) >= 8))
    offsets = [(t - rec.calls[0]) % 0.05 for t in rec.calls]
    assert len({round(o, 2) for o in offsets}) > 1  # not all on the grid


def test_first_run_is_immediate_and_later_runs_sit_on_the_shifted_grid():
    rec = Recorder()
    s = Schedule(rec, 0.1, 1.0, 0.0, lambda n, r: None, CollectorStats(), phase=0.06)

    async def scenario():
        started = time.monotonic()
        await run_until([s], lambda: len(rec.calls) >= 4)
        return started

    started = uvloop.run(scenario())
    assert rec.calls[0] - started < 0.05  # not delayed by the phase
    gaps = [b - a for a, b in zip(rec.calls, rec.calls[1:])]
    assert gaps[0] >= 0.15  # one interval plus the phase
    assert all(g >= 0.09 for g in gaps[1:])


def test_a_failing_sink_is_counted_and_does_not_end_the_schedule():
    def sink(name, records):
        raise OSError("buffer unwritable")

    s = make(Recorder(), sink=sink)
    uvloop.run(run_until([s], lambda: len(s.collector.calls) >= 3))
    assert s.stats.errors >= 2
    assert s.stats.last_error == "OSError: buffer unwritable"


class _DiskHost:
    """A host whose statvfs answers on the calling thread, except the
    mounts in `hang`, which wait for `release` as a dead NFS server would."""

    def __init__(self, mounts):
        self.list = mounts
        self.threads = []
        self.release = threading.Event()
        self.hang = set()
        self.mount_reads = 0

    def mounts(self):
        self.mount_reads += 1
        return list(self.list)

    def fs_usage(self, mountpoint):
        from collectors.source import FsUsage

        self.threads.append(threading.current_thread())
        if mountpoint in self.hang:
            self.release.wait(10)
        return FsUsage(100, 40, 60, 10, 5)


def test_disk_runs_on_the_loop_for_memory_file_systems_and_in_a_thread_with_its_timeout_otherwise():
    """The disk collector's runs skip the thread handoff once a run found
    every wanted file system answered from memory (ext4, xfs...): one mounts
    read a run, statvfs on the loop's thread. An NFS mount appearing sends
    the runs to a thread, where its hang is timed out and the loop goes on."""
    from collectors.disk import DiskCollector
    from collectors.source import Mount

    host = _DiskHost([Mount("/dev/sda1", "/", "ext4"), Mount("/dev/sdb1", "/data", "xfs")])
    disk = make(DiskCollector(host), timeout=0.2)
    ticker = make(Recorder())

    async def scenario():
        loop_thread = threading.current_thread()
        await run_until([disk], lambda: disk.stats.runs >= 4)
        # the first run in the thread; the next ones, knowing the table, on the loop
        assert host.threads[0] is not loop_thread and set(host.threads[2:]) == {loop_thread}
        assert host.mount_reads == disk.stats.runs
        assert {r.labels["mount"] for r in disk.received[-1]} == {"/", "/data"}
        host.list.append(Mount("srv:/export", "/mnt/nfs", "nfs4"))
        host.hang.add("/mnt/nfs")
        runs = ticker.stats.runs
        timed_out = lambda: disk.stats.timeouts >= 1 and ticker.stats.runs > runs + 3  # noqa: E731
        await run_until([disk, ticker], timed_out)
        assert any(t is not loop_thread for t in host.threads)
        host.release.set()

    uvloop.run(scenario())
    assert disk.stats.errors == 0


def test_a_schedule_that_ends_closes_its_collector():
    """A stop or a reload cancels the schedules: each collector lets go of
    what it keeps open (a scrape's connection), once, after its last run."""

    class Closing(Recorder):
        def __init__(self):
            super().__init__()
            self.closed: list[int] = []

        def close(self):
            self.closed.append(len(self.calls))

    s = make(Closing())
    uvloop.run(run_until([s], lambda: len(s.received) >= 2))
    assert s.collector.closed == [len(s.collector.calls)]
