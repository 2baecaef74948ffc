"""Copytruncate and rotations, as a hostile second read of f47731c found them
wrong (copies in the glob, copies of saved files, unseen second
truncations): each test failed on that commit."""

from __future__ import annotations

import os
import time
import types

import pytest

import collectors.logs.files as files_module
from tests.collectors.logs.test_files import copytruncate, drain, follower, lines_of, write


@pytest.fixture
def clock(monkeypatch):
    """files.py's wall clock (tombstone times, their expiry in state())."""
    now = [time.time()]
    monkeypatch.setattr(files_module, "time", types.SimpleNamespace(time=lambda: now[0]))
    return now


def drain_twice(f, now):
    # a rotation adopted by a read is read at the next one
    return lines_of(drain(f, now)) + lines_of(drain(f, now))


def test_a_log_empty_for_an_hour_after_copytruncate_rereads_the_copy(tmp_path, clock):
    """Daily copytruncate of a quiet log: the copy is rescued and tombstoned,
    the log stays empty; its first line more than CLOSED_KEEP later makes
    `_read_one` search rotations written since the file's last change
    (`looked_at`, an hour ago), when the tombstone is gone: app.log.1 is
    read again from 0."""
    log = tmp_path / "app.log"
    t = clock[0]
    write(log, "a 1", "a 2")
    f = follower(tmp_path, now=t, paths=(str(log),))
    assert lines_of(drain(f, t)) == ["a 1", "a 2"]
    copytruncate(tmp_path, log)  # logrotate at 00:00; the copy's mtime is now
    assert drain(f, t + 1) == []
    clock[0] = t + 3700  # commits go on (other files): tombstones older than an hour dropped
    f.state()
    assert drain(f, t + 3690) == []  # the agent looks every poll, finding nothing new
    write(log, "b 1")  # the first line of the day, at 01:01
    assert sorted(drain_twice(f, t + 3700)) == ["b 1"]


def test_a_log_that_was_empty_rereads_another_files_create_rotation(tmp_path, clock):
    """Create mode, no copytruncate anywhere: /l/*.log, b.log renamed to
    b.log.1, read to its end and closed; a.log, empty since before, gets its
    first line more than an hour later: b.log.1 is read again from 0 (a
    regression for rename + create: the rotation search ran only at scans)."""
    t = clock[0]
    (tmp_path / "a.log").touch()
    write(tmp_path / "b.log", "b 1")
    f = follower(tmp_path, now=t, rotate_wait=5.0)
    assert lines_of(drain(f, t)) == ["b 1"]
    os.rename(tmp_path / "b.log", tmp_path / "b.log.1")
    write(tmp_path / "b.log", "b 2")
    assert lines_of(drain(f, t + 1)) == ["b 2"]
    assert drain(f, t + 10) == [] and len(f.files) == 2  # b.log.1 closed
    clock[0] = t + 3700
    f.state()
    write(tmp_path / "a.log", "a 1")
    assert sorted(drain_twice(f, t + 3700)) == ["a 1"]


def test_a_truncation_of_a_long_idle_log_rereads_old_rotations(tmp_path, clock):
    """The truncation branch too: a.log unchanged for hours is truncated
    by its writer; the search runs from a.log's last change and reads
    b.log.1 (rotated, read and closed more than an hour ago) again."""
    t = clock[0]
    write(tmp_path / "a.log", "a 1")
    write(tmp_path / "b.log", "b 1")
    f = follower(tmp_path, now=t, rotate_wait=5.0)
    assert sorted(lines_of(drain(f, t))) == ["a 1", "b 1"]
    os.rename(tmp_path / "b.log", tmp_path / "b.log.1")
    write(tmp_path / "b.log", "b 2")
    assert lines_of(drain(f, t + 1)) == ["b 2"]
    assert drain(f, t + 10) == []
    clock[0] = t + 3700
    f.state()
    os.truncate(tmp_path / "a.log", 0)
    write(tmp_path / "a.log", "a 2")
    assert sorted(drain_twice(f, t + 3700)) == ["a 2"]


HEADER = "# app 2.1 log; fields: time level component message request-id user-agent " * 4


def test_a_new_file_with_the_saved_files_header_is_no_copy_when_the_saved_one_is_gone(tmp_path):
    """Rename + create with compress (no delaycompress) while the agent was
    stopped: the saved inode is gone (gzipped), the new app.log starts with
    the same 256-byte header. `_saved_copy_of` takes "gone" for "truncated":
    the new file is read from the old file's offset; its first lines are
    lost (here all of them: the new file is shorter than that offset)."""
    log = tmp_path / "app.log"
    now = time.time()
    write(log, HEADER, *(f"old {i}" for i in range(50)))
    f = follower(tmp_path, now=now, paths=(str(log),))
    assert len(drain(f, now)) == 51
    write(log, "old unread")  # written after our last read
    state = f.state()
    f.close()
    os.rename(log, tmp_path / "app.log.1")  # logrotate: create, compress
    write(log, HEADER, "new 1", "new 2")  # the writer reopened
    os.unlink(tmp_path / "app.log.1")  # ...gzipped: the inode is gone
    g = follower(tmp_path, saved=state, counters={}, now=now + 1, paths=(str(log),))
    assert lines_of(drain(g, now + 1)) == [HEADER, "new 1", "new 2"]


def test_a_short_log_whose_next_generation_starts_alike_loses_its_first_lines(tmp_path):
    """The same with a short file: fingerprint of its first 16 bytes (all it
    held). Create mode, the rotated file moved out of the directory (olddir)
    while stopped; the new file's identical first line is skipped."""
    log = tmp_path / "app.log"
    (tmp_path / "old").mkdir()
    now = time.time()
    write(log, "service started")
    f = follower(tmp_path, now=now, paths=(str(log),))
    assert lines_of(drain(f, now)) == ["service started"]
    state = f.state()
    f.close()
    os.rename(log, tmp_path / "old" / "app.log.1")  # olddir
    write(log, "service started", "request 1")
    g = follower(tmp_path, saved=state, counters={}, now=now + 1, paths=(str(log),))
    assert lines_of(drain(g, now + 1)) == ["service started", "request 1"]


def test_a_writer_that_empties_its_log_each_cycle_costs_one_directory_listing(
    tmp_path, monkeypatch
):
    """Cost. A log its writer empties and rewrites (truncate, then write)
    between two reads, in a directory of many files: before f47731c each
    cycle listed the directory once (the copy search at the truncation);
    now three times (that search, the rotation search after a truncation,
    the rotation search when the emptied file is written). Measured with
    1,000 logs + 3,000 rotations in the directory: 2.1 -> 19.5 ms for the
    read after the write, 37 -> 54 ms for a truncate-and-rewrite read."""
    for i in range(20):
        write(tmp_path / f"s{i}.log", f"svc {i}")
    status = tmp_path / "status.log"
    write(status, "status 0")
    f = follower(tmp_path)
    drain(f, time.time())
    past = time.time() - 60
    os.utime(tmp_path, (past, past))  # the files were made a while ago
    calls = []
    real = files_module._files_in
    monkeypatch.setattr(files_module, "_files_in", lambda d: calls.append(d) or real(d))
    for k in range(1, 4):
        os.truncate(status, 0)
        f.read(time.time(), 1 << 20)  # sees it empty
        write(status, f"status {k}")
        f.read(time.time(), 1 << 20)
    assert len(calls) <= 3


def test_a_file_truncated_twice_before_its_first_read_loses_the_second_copy(tmp_path):
    """Low: `looked_at` starts at 0, so the first read of a file never runs
    the rotation search, even when it finds the file truncated. In the agent
    the first read follows the open within a step, so it takes two
    copytruncates in that window; /tmp/sim_ct.py hits it because its first
    read comes many steps after the follower is made."""
    log = tmp_path / "app.log"
    write(log, "a 1")
    now = time.time()
    f = follower(tmp_path, now=now, paths=(str(log),))  # opened, not read yet
    copytruncate(tmp_path, log)
    write(log, "b 1")
    copytruncate(tmp_path, log)
    write(log, "c 1")
    assert sorted(drain_twice(f, time.time())) == ["a 1", "b 1", "c 1"]
