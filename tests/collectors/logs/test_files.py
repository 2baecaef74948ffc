"""Following real files through every kind of rotation (collectors/logs/files.py):
every line exactly once, what rotation made unreadable counted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from collectors.logs.config import LogsConfig
from collectors.logs.files import BYTES, LINES, MISSED, READ_BYTES, TRUNCATED, Follower


def follower(tmp: Path, saved=None, counters=None, now=1000.0, **options) -> Follower:
    options.setdefault("paths", (str(tmp / "*.log"),))
    options.setdefault("start_at", "beginning")
    return Follower(LogsConfig(**options), saved, counters if counters is not None else {}, now)


def drain(f: Follower, now: float = 1000.0) -> list[tuple[str, str]]:
    """Every line the follower hands out now, as (file label, line)."""
    out = []
    while True:
        f.scan(now)
        chunks, more = f.read(now, 1 << 20)
        for c in f.take_rescued() + chunks:
            assert c.data.endswith(b"\n") and c.data.count(b"\n") == c.lines
            out += [(c.label, line) for line in c.data.decode().splitlines()]
        if not more:
            return out


def write(path: Path, *lines: str, mode: str = "a") -> None:
    with open(path, mode) as fh:
        fh.write("".join(line + "\n" for line in lines))


def lines_of(got):
    return [line for _, line in got]


def test_start_at_end_skips_what_was_there_but_not_files_that_appear_later(tmp_path):
    write(tmp_path / "a.log", "old 1", "old 2")
    f = follower(tmp_path, start_at="end")
    assert drain(f) == []
    write(tmp_path / "a.log", "new 1")
    write(tmp_path / "b.log", "b 1", "b 2")  # appeared while running: read whole
    assert sorted(lines_of(drain(f))) == ["b 1", "b 2", "new 1"]


def test_a_partial_line_waits_for_its_newline(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("one\ntw")
    f = follower(tmp_path)
    assert lines_of(drain(f)) == ["one"]
    with open(log, "a") as fh:
        fh.write("o\nthr")
    assert lines_of(drain(f)) == ["two"]
    counters = f.counters[str(log)]
    assert counters[LINES] == 2 and counters[BYTES] == len("one\ntwo\n")


def test_rename_and_create_reads_the_old_file_to_its_end_then_the_new_one(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1", "2")
    f = follower(tmp_path, paths=(str(log),), rotate_wait=5.0)
    assert lines_of(drain(f)) == ["1", "2"]
    write(log, "3")
    os.rename(log, tmp_path / "app.log.1")  # outside the glob now
    write(tmp_path / "app.log.1", "4")  # the writer has not reopened yet
    write(log, "5")
    assert sorted(lines_of(drain(f, 1001.0))) == ["3", "4", "5"]
    assert len(f.files) == 2  # the old one stays open for rotate_wait
    write(tmp_path / "app.log.1", "6")
    assert lines_of(drain(f, 1003.0)) == ["6"]
    assert drain(f, 1010.0) == [] and len(f.files) == 1


def test_a_rename_within_the_glob_changes_the_label_only(tmp_path):
    write(tmp_path / "app.log", "1")
    f = follower(tmp_path, paths=(str(tmp_path / "app.log*"),))
    assert drain(f) == [(str(tmp_path / "app.log"), "1")]
    os.rename(tmp_path / "app.log", tmp_path / "app.log.1")
    write(tmp_path / "app.log.1", "2")
    write(tmp_path / "app.log", "3")
    got = drain(f)
    assert sorted(got) == [(str(tmp_path / "app.log"), "3"), (str(tmp_path / "app.log.1"), "2")]


def test_copytruncate_restarts_at_zero_and_takes_the_rest_from_the_copy(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1", "2")
    f = follower(tmp_path, paths=(str(log),))
    assert lines_of(drain(f)) == ["1", "2"]
    write(log, "3", "4")  # not read yet when logrotate copies and truncates
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    write(log, "5")
    assert lines_of(drain(f)) == ["3", "4", "5"]
    assert f.counters[str(log)][MISSED] == 0


def test_copytruncate_with_the_copy_in_the_glob_reads_nothing_twice(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1", "2")
    f = follower(tmp_path, paths=(str(tmp_path / "app.log*"),))
    assert lines_of(drain(f)) == ["1", "2"]
    write(log, "3")
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    write(log, "4")
    assert sorted(lines_of(drain(f))) == ["3", "4"]


def test_copytruncate_without_a_copy_counts_what_it_missed(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1")
    f = follower(tmp_path, paths=(str(log),))
    drain(f)
    write(log, "22")
    f.scan(1000.0)
    f._read_one(next(iter(f.files.values())), 1000.0, 0)  # saw the size, read nothing
    os.truncate(log, 0)
    write(log, "3")
    assert lines_of(drain(f)) == ["3"]
    assert f.counters[str(log)][MISSED] == 3


def test_delete_and_recreate(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1")
    f = follower(tmp_path, paths=(str(log),))
    drain(f)
    write(log, "2")
    log.unlink()
    write(log, "3")
    assert sorted(lines_of(drain(f))) == ["2", "3"]
    assert len(f.files) == 2  # a writer may still hold the deleted file
    assert drain(f, 1010.0) == [] and len(f.files) == 1  # closed after rotate_wait


def test_inode_reuse_is_a_new_file(tmp_path):
    log = tmp_path / "app.log"
    write(log, "first file line")
    f = follower(tmp_path, paths=(str(log),))
    drain(f)
    saved = f.state()
    f.close()
    log.unlink()
    write(log, "second file, maybe the same inode")
    st = log.stat()
    for s in saved["files"]:  # make sure the saved entry names this inode
        s["dev"], s["ino"] = st.st_dev, st.st_ino
    f = follower(tmp_path, saved=saved, paths=(str(log),))
    assert lines_of(drain(f)) == ["second file, maybe the same inode"]


def test_restart_resumes_and_rotation_while_stopped_is_followed(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1", "2")
    counters: dict = {}
    f = follower(tmp_path, counters=counters, paths=(str(log),))
    drain(f)
    saved = f.state()
    f.close()
    write(log, "3")  # written while we were stopped
    os.rename(log, tmp_path / "app.log.1")
    write(log, "4")
    f = follower(tmp_path, saved=saved, counters=counters, paths=(str(log),), start_at="end")
    assert sorted(lines_of(drain(f))) == ["3", "4"]
    assert counters[str(log)][LINES] == 4


def test_a_file_gone_while_stopped_counts_as_missed(tmp_path):
    log = tmp_path / "app.log"
    write(log, "1")
    counters: dict = {}
    f = follower(tmp_path, counters=counters, paths=(str(log),))
    drain(f)
    write(log, "2345")
    f.scan(1000.0)
    f._read_one(next(iter(f.files.values())), 1000.0, 0)
    saved = f.state()
    f.close()
    log.unlink()
    follower(tmp_path, saved=saved, counters=counters, paths=(str(log),))
    assert counters[str(log)][MISSED] == 5


def test_long_lines_are_cut_and_counted_even_across_a_restart(tmp_path):
    log = tmp_path / "app.log"
    write(log, "short", "x" * 1000, "after")
    counters: dict = {}
    f = follower(tmp_path, counters=counters, max_line_bytes=300)
    assert lines_of(drain(f)) == ["short", "x" * 300, "after"]
    with open(log, "a") as fh:
        fh.write("y" * 700)  # a long line still being written
    assert lines_of(drain(f)) == ["y" * 300]
    saved = f.state()
    f.close()
    with open(log, "a") as fh:
        fh.write("y" * 10 + "\nnext\n")
    f = follower(tmp_path, saved=saved, counters=counters, max_line_bytes=300)
    assert lines_of(drain(f)) == ["next"]
    assert counters[str(log)][TRUNCATED] == 2


def test_a_symlink_is_followed_and_a_retargeted_link_is_a_rotation(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    write(real / "one.txt", "a")
    link = tmp_path / "current.log"
    link.symlink_to(real / "one.txt")
    f = follower(tmp_path, paths=(str(link),))
    assert lines_of(drain(f)) == ["a"]
    write(real / "one.txt", "b")
    write(real / "two.txt", "c")
    tmp_link = tmp_path / "tmp.link"
    tmp_link.symlink_to(real / "two.txt")
    os.replace(tmp_link, link)
    assert sorted(lines_of(drain(f))) == ["b", "c"]


def test_compressed_rotations_are_not_read(tmp_path):
    write(tmp_path / "app.log.2.gz", "binary really")
    write(tmp_path / "app.log", "1")
    f = follower(tmp_path, paths=(str(tmp_path / "app.log*"),))
    assert lines_of(drain(f)) == ["1"]


def test_a_small_budget_still_makes_progress_and_reports_more(tmp_path):
    log = tmp_path / "app.log"
    count = 3 * READ_BYTES // 60  # three reads' worth of 60-byte lines
    write(log, *(f"line {i:07d} " + "x" * 47 for i in range(count)))
    f = follower(tmp_path)
    got, rounds = [], 0
    while True:
        rounds += 1
        f.scan(1000.0)
        chunks, more = f.read(1000.0, 10)  # less than one line
        got += [line for c in chunks for line in c.data.decode().splitlines()]
        if not more:
            break
    assert len(got) == count and rounds > 2


# -- rotations no glob ever showed ------------------------------------------------


def started(tmp: Path, log: Path, now: float, **options) -> Follower:
    """A follower of `log` alone that has read its first line, "a 1"."""
    write(log, "a 1")
    f = follower(tmp, now=now, paths=(str(log),), **options)
    assert lines_of(drain(f, now)) == ["a 1"]
    return f


def restart(f: Follower, tmp: Path, now: float, **options) -> Follower:
    """What a new agent builds from the state `f` would have committed."""
    state = f.state()
    f.close()
    return follower(tmp, saved=state, counters=f.counters, now=now, **options)


def test_a_file_created_and_rotated_away_while_stopped_is_read(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    write(log, "a 1", "a 2")
    f = follower(tmp_path, now=now, paths=(str(log),))
    assert lines_of(drain(f, now)) == ["a 1", "a 2"]
    # stopped: two rotations by rename + create; the middle file is never at app.log
    write(log, "a 3")
    os.rename(log, tmp_path / "app.log.1")
    write(log, "b 1", "b 2")
    os.rename(tmp_path / "app.log.1", tmp_path / "app.log.2")
    os.rename(log, tmp_path / "app.log.1")
    write(log, "c 1")
    g = restart(f, tmp_path, now + 5, paths=(str(log),))
    assert sorted(lines_of(drain(g, now + 5))) == ["a 3", "b 1", "b 2", "c 1"]
    assert {label for label, _ in drain(g, now + 5)} <= {str(log)}
    assert g.counters[str(log)][MISSED] == 0


def test_two_rotations_between_scans_lose_nothing(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    f = started(tmp_path, log, now)
    write(log, "a 2")
    os.rename(log, tmp_path / "app.log.1")
    write(log, "b 1")
    os.rename(tmp_path / "app.log.1", tmp_path / "app.log.2")
    os.rename(log, tmp_path / "app.log.1")
    write(log, "c 1")
    assert sorted(lines_of(drain(f, now + 1))) == ["a 2", "b 1", "c 1"]


def test_old_rotations_and_files_already_read_are_not_read_again(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    write(tmp_path / "app.log.3", "ancient")
    os.utime(tmp_path / "app.log.3", (now - 86400, now - 86400))
    write(tmp_path / "app.log2", "another file")  # not named as a rotation of app.log
    write(log, "a 1")
    f = follower(tmp_path, now=now, paths=(str(log),), rotate_wait=0)
    assert lines_of(drain(f, now)) == ["a 1"]
    os.rename(log, tmp_path / "app.log.1")
    write(log, "b 1")
    assert lines_of(drain(f, now + 1)) == ["b 1"]  # the rotation search finds only app.log.1
    assert drain(f, now + 2) == [] and len(f.files) == 1  # app.log.1 read out and closed
    # restarted: app.log.1 is recent, but was read to its end; app.log.3 is old
    g = restart(f, tmp_path, now + 3, paths=(str(log),))
    write(log, "b 2")
    assert lines_of(drain(g, now + 3)) == ["b 2"]


def test_copytruncate_twice_while_stopped_reads_the_rest_from_the_copies(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    f = started(tmp_path, log, now)
    write(log, "a 2")
    for _ in range(2):  # copytruncate, as logrotate does it, twice
        if (tmp_path / "app.log.1").exists():
            os.rename(tmp_path / "app.log.1", tmp_path / "app.log.2")
        (tmp_path / "app.log.1").write_bytes(log.read_bytes())
        os.truncate(log, 0)
        write(log, "b 1" if not (tmp_path / "app.log.2").exists() else "c 1")
    g = restart(f, tmp_path, now + 5, paths=(str(log),))
    assert sorted(lines_of(drain(g, now + 5))) == ["a 2", "b 1", "c 1"]
    assert g.counters[str(log)][MISSED] == 0


def test_a_copy_read_after_copytruncate_is_not_read_again_after_a_restart(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    f = started(tmp_path, log, now)
    write(log, "a 2")
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())  # logrotate's copy...
    os.truncate(log, 0)  # ...and truncation, before the agent read "a 2"
    write(log, "b 1")
    assert sorted(lines_of(drain(f, now + 1))) == ["a 2", "b 1"]  # "a 2" from the copy
    g = restart(f, tmp_path, now + 2, paths=(str(log),))
    write(log, "b 2")
    assert lines_of(drain(g, now + 2)) == ["b 2"]  # the recent copy is known: not read again


def test_recycled_read_buffers_hand_out_every_line_once_and_are_let_go_when_idle(tmp_path):
    log = tmp_path / "app.log"
    count = 5 * READ_BYTES // 60 + 7  # five reads' worth and a bit
    write(log, *(f"line {i:07d} " + "y" * 47 for i in range(count)))
    f = follower(tmp_path)
    got: list[str] = []
    while True:
        f.scan(1000.0)
        chunks, more = f.read(1000.0, 2 * READ_BYTES)
        got += [line for c in chunks for line in c.data.decode().splitlines()]
        f.recycle(chunks)  # the next read overwrites these buffers
        if not more:
            break
    assert got == [f"line {i:07d} " + "y" * 47 for i in range(count)]
    assert f.spare  # buffers were kept while the backlog lasted
    write(log, "one more")
    f.scan(1000.0)
    chunks, _ = f.read(1000.0, 2 * READ_BYTES)
    assert [bytes(c.data) for c in chunks] == [b"one more\n"]
    f.read(1000.0, 2 * READ_BYTES)
    assert f.spare == []  # a read with no backlog before it lets them go


def test_rotations_read_out_and_closed_are_never_read_again(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    write(log, "a1", "a2")
    f = follower(tmp_path, now=now, paths=(str(log),), rotate_wait=0)
    got = drain(f, now)
    for step, name in enumerate("bcdef", 1):
        for i in range(5, 0, -1):  # logrotate's renames, then a new file
            if (tmp_path / f"app.log.{i}").exists():
                os.rename(tmp_path / f"app.log.{i}", tmp_path / f"app.log.{i + 1}")
        os.rename(log, tmp_path / "app.log.1")
        write(log, f"{name}1", f"{name}2")
        got += drain(f, now + step) + drain(f, now + step)  # the second closes the old file
    lines = lines_of(got)
    assert sorted(lines) == sorted(f"{n}{i}" for n in "abcdef" for i in (1, 2))


def test_a_new_file_that_only_begins_like_a_short_one_is_no_copy_of_it(tmp_path):
    write(tmp_path / "worker-1.log", "worker starting")
    f = follower(tmp_path)
    got = drain(f)
    write(tmp_path / "worker-2.log", "worker starting", "w2 oom", "w2 line 3")
    got += drain(f)
    write(tmp_path / "worker-1.log", "w1 disk full")
    got += drain(f)
    assert sorted(got) == sorted(
        [(str(tmp_path / "worker-1.log"), x) for x in ("worker starting", "w1 disk full")]
        + [(str(tmp_path / "worker-2.log"), x) for x in ("worker starting", "w2 oom", "w2 line 3")]
    )


def test_an_unreadable_neighbour_does_not_end_the_search_for_the_copy(tmp_path, monkeypatch):
    log = tmp_path / "syslog"
    write(log, *(f"line {i:03d}" for i in range(100)))
    f = follower(tmp_path, paths=(str(log),))
    assert len(drain(f)) == 100
    write(log, *(f"line {i:03d}" for i in range(100, 110)))
    unreadable = {f"btmp.{i}" for i in range(50)}  # root's 0600 files, as /var/log/btmp
    for name in unreadable:  # (so many that one comes before the copy in scandir's order)
        write(tmp_path / name, "secret " * 1000)  # larger than the offset: a candidate
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if os.path.basename(path) in unreadable:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)  # root reads anything: play an agent user
    (tmp_path / "syslog.1").write_bytes(log.read_bytes())  # copytruncate
    os.truncate(log, 0)
    write(log, "after")
    assert lines_of(drain(f)) == [*(f"line {i:03d}" for i in range(100, 110)), "after"]


def test_one_files_backlog_does_not_keep_the_others_waiting(tmp_path):
    write(tmp_path / "access.log", *(f"GET /{i} " + "z" * 90 for i in range(READ_BYTES // 25)))
    f = follower(tmp_path)
    write(tmp_path / "secure.log", "Failed password for root")  # appears while reading
    seen_at = None
    for step in range(1, 10):
        f.scan(1000.0)
        chunks, _ = f.read(1000.0, READ_BYTES)
        if any(c.label.endswith("secure.log") for c in chunks):
            seen_at = step
            break
    assert seen_at is not None and seen_at <= 2


def test_a_multiline_record_goes_out_when_the_next_starts_and_the_last_waits(tmp_path):
    """Multi-line events: a record is complete when a line starts the next;
    the file's last record is held (its offset not passed) until
    multiline_timeout, then goes out whole."""
    from collectors.logs.config import MultilineConfig
    from collectors.logs.files import RECORD_SEP

    log = tmp_path / "app.log"
    log.write_text("A one\n  more\nB two\n  again\n")
    f = follower(tmp_path, multiline=MultilineConfig(start=r"^\S"), multiline_timeout=2.0)
    sep = RECORD_SEP.decode()

    def drain(f, now):  # records: split at line breaks only (str.splitlines splits at \x1e)
        f.scan(now)
        chunks, _ = f.read(now, 1 << 20)
        return [(c.label, r) for c in chunks for r in c.data.decode().split("\n")[:-1]]

    assert drain(f, 1000.0) == [(str(log), f"A one{sep}  more")]
    held = f.files[next(iter(f.files))].offset
    assert held == len("A one\n  more\n")  # a kill now reads B again, whole
    assert drain(f, 1001.0) == []  # within the timeout: still held
    with open(log, "a") as out:
        out.write("  and more\n")
    assert drain(f, 1001.5) == []  # a continuation: the same record, still held
    assert drain(f, 1002.1) == [(str(log), f"B two{sep}  again{sep}  and more")]


# --- copytruncate, found by a randomized run (issue 18's second read) ----------------


def copytruncate(tmp: Path, log: Path, keep: int = 10) -> None:
    """What logrotate's copytruncate does: shift the numbered copies, copy, truncate."""
    for k in range(keep - 1, 0, -1):
        if (tmp / f"{log.name}.{k}").exists():
            os.rename(tmp / f"{log.name}.{k}", tmp / f"{log.name}.{k + 1}")
    (tmp / f"{log.name}.1").write_bytes(log.read_bytes())
    os.truncate(log, 0)


def test_a_copy_on_the_inode_of_a_file_closed_empty_is_still_a_copy(tmp_path):
    """An inode freed by a file closed while empty (fingerprint of nothing)
    and reused by copytruncate's copy: the copy was read from 0 again."""
    log = tmp_path / "app.log"
    write(log, "1", "2")
    f = follower(tmp_path, paths=(str(tmp_path / "app.log*"),))
    assert lines_of(drain(f)) == ["1", "2"]
    write(log, "3")
    copy = tmp_path / "app.log.1"
    copy.write_bytes(log.read_bytes())
    st = os.stat(copy)
    f.closed[(st.st_dev, st.st_ino)] = (0, 0, 0, time.time())  # as if closed empty once
    os.truncate(log, 0)
    write(log, "4")
    assert sorted(lines_of(drain(f))) == ["3", "4"]


def test_copytruncate_while_stopped_with_the_copy_in_the_glob_reads_it_from_the_offset(tmp_path):
    """The copy is in the glob; the original holds other lines now: the
    copy is resumed where the original was, not read from 0."""
    log = tmp_path / "app.log"
    now = time.time()
    write(log, "a 1", "a 2")
    f = follower(tmp_path, now=now, paths=(str(tmp_path / "app.log*"),))
    assert lines_of(drain(f, now)) == ["a 1", "a 2"]
    write(log, "a 3")
    state = f.state()
    f.close()
    copytruncate(tmp_path, log)  # stopped meanwhile
    write(log, "b 1")
    g = follower(
        tmp_path, saved=state, counters={}, now=now + 1, paths=(str(tmp_path / "app.log*"),)
    )
    assert sorted(lines_of(drain(g, now + 1))) == ["a 3", "b 1"]


def test_two_copytruncates_between_two_reads_lose_nothing(tmp_path):
    """The first copy is found by the original's fingerprint; the second
    holds lines written after the first truncation, never seen."""
    log = tmp_path / "app.log"
    now = time.time()
    write(log, "a 1")
    f = follower(tmp_path, now=now, paths=(str(log),))
    assert lines_of(drain(f, now)) == ["a 1"]
    write(log, "a 2")
    copytruncate(tmp_path, log)
    write(log, "b 1")
    copytruncate(tmp_path, log)
    write(log, "c 1")
    got = []
    for _ in range(2):  # a copy found by a read is read at the next one
        got += lines_of(drain(f, time.time()))
    assert sorted(got) == ["a 2", "b 1", "c 1"]


def test_an_empty_file_written_and_truncated_between_two_looks_loses_nothing(tmp_path):
    log = tmp_path / "app.log"
    now = time.time()
    log.touch()
    f = follower(tmp_path, now=now, paths=(str(log),))
    assert drain(f, now) == []
    write(log, "a 1", "a 2")
    copytruncate(tmp_path, log)  # before the agent looked: no fingerprint tells
    write(log, "b 1")
    got = []
    for _ in range(2):
        got += lines_of(drain(f, time.time()))
    assert sorted(got) == ["a 1", "a 2", "b 1"]


@pytest.mark.parametrize("glob", ["app.log", "app.log*"])
def test_random_writes_reads_and_copytruncates_count_every_line_once(tmp_path, glob):
    """Writes, reads and copytruncate rotations (10 kept) in a random order,
    rotations far more often than any logrotate runs: every line once."""
    import random

    for seed in range(15):
        rng = random.Random(seed)
        tmp = tmp_path / str(seed)
        tmp.mkdir()
        log = tmp / "app.log"
        log.touch()
        f = follower(tmp, now=time.time(), paths=(str(tmp / glob),))
        seen: list[str] = []
        n = 0
        for _ in range(300):
            act = rng.random()
            if act < 0.55:
                for _ in range(rng.randint(1, 5)):
                    n += 1
                    write(log, f"seq={n}")
            elif act < 0.85:
                seen += lines_of(drain(f, time.time()))
            else:
                copytruncate(tmp, log)
        for _ in range(3):
            seen += lines_of(drain(f, time.time()))
        f.close()
        assert sorted(seen, key=lambda s: int(s[4:])) == [f"seq={i}" for i in range(1, n + 1)], seed
