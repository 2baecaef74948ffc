"""Following log files through rotation without losing or repeating a line.

Identity. A file is its (device, inode), confirmed by a fingerprint: a hash
of its first bytes (up to FP_BYTES, fewer while the file is shorter). The
fingerprint tells a reused inode from the file we knew, and a copy of a
file (copytruncate's `app.log.1`) from a new file.

Offsets. A file's offset is the end of the last complete line handed out;
a partial last line is read again next time, until its newline arrives.
The tailer persists offsets only once the events from the lines before
them are in the buffer (agent/core/checkpoint.py), so after a crash reading
resumes at a line boundary whose consequences are all recorded.

What each rotation looks like here:

- rename + create: the path now names a new inode. The old file stays open
  and is read to its end; it is closed once it has not grown for
  `rotate_wait`, deleted or not. If the new name still
  matches the glob, the file just changes its `file` label.
- copytruncate: the same inode shrinks below our offset. Reading restarts
  at 0. What the writer added between our last read and the truncation
  would be lost, so first we look in the same directory for the copy (same
  fingerprint) and read the rest from it; what still cannot be read is
  counted in `log_bytes_missed_total`. A copy that matches the glob is
  recognised by its fingerprint and read only from where we were (after a
  restart too: by the fingerprint the state saved, when the saved inode is
  still there, emptied; one that is gone was renamed or deleted, and a new
  file that starts alike is new). A second truncation before we looked
  again left a copy of lines we never saw: the rotations of that file's
  own name written since we last looked (each poll) are read from their
  beginning, in the listing the copy search made; the same when a file
  that was empty when we last looked has changed (no fingerprint tells a
  truncation there), if a file appeared in its directory since (one
  stat). A file remembered while empty identifies nothing: its inode,
  reused, may hold a copy.
- delete: like rename; the open file is read to its end.
- inode reuse: the fingerprint differs from the one remembered, so the
  file is new and read from 0.
- symlinks: followed; a retargeted link is a rename + create.
- while the agent was stopped: a remembered file no longer at its path is
  looked for in its directory by (device, inode) and fingerprint and read
  to its end (for copytruncate: a file with its fingerprint, read from the
  remembered offset); one that is gone counts what was never read as missed.
- rotations we never saw: a file can be created and rotated away while the
  agent is down, or between two scans (two rotations within one poll, or a
  kill before the new file's offset was committed). Whenever a followed
  file turns out rotated, and at start, the directory is searched for
  rotations of the glob (its file name followed by `.` `-` or `_`) that no
  glob finds, are not compressed, and were written since the last scan
  the state records (`seen_at`, less a margin): each is read from its
  beginning as a rotated file. Files read to their end and closed are
  remembered for an hour (`closed`, by identity and offset), so one found
  again this way is not read twice.

Files first seen when a [[logs]] table is used for the first time start at
`start_at`; every file that appears after that starts at its beginning.
Compressed rotations (`exclude`, by name) are never read.

Lines longer than `max_line_bytes` are cut there and counted; the rest of
such a line is skipped, even across restarts (`skipping` is persisted).
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from collectors.logs.config import LogsConfig, base_dir
from collectors.logs.matcher import Data

log = structlog.get_logger("vigil.collectors.logs")

FP_BYTES = 256
READ_BYTES = 4 << 20  # per file per read: fair to other files, bounded memory
RECORD_SEP = b"\x1e"  # multiline: joins a record's lines (ASCII's record separator)
SPARE_BUFFERS = 4  # read buffers kept for reuse while a backlog is read (STEP_BYTES' worth)
MAX_RESCUE = 64 << 20  # read at most this much from a copytruncate copy; the rest is missed
# A rotation written this long before the last scan still counts as unseen:
# file times tick coarser than the wall clock, and a tombstone stops a repeat.
SEEN_MARGIN = 2.0
CLOSED_KEEP = 3600.0  # seconds a closed file is remembered, so it is never read twice
CLOSED_MAX = 256  # closed files remembered per table
COMPARE_BYTES = 1 << 20  # how far a possible copy of a short file is compared
# counters per file label, in this order (persisted as a list)
COUNTERS = ("lines", "bytes", "missed", "reread", "truncated")
LINES, BYTES, MISSED, REREAD, TRUNCATED = range(5)


def fingerprint(fd: int, length: int) -> int:
    """A 64-bit hash of the first `length` bytes (0 if the file is shorter)."""
    data = os.pread(fd, length, 0)
    if len(data) < length:
        return 0
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@dataclass
class Chunk:
    """Complete lines read from one file: `data` ends with a newline (a
    bytearray when read from a file: see `_read_one`)."""

    label: str
    data: Data
    lines: int


@dataclass
class Followed:
    path: str  # the `file` label: where the glob last found it
    dev: int
    ino: int
    fp: int
    fp_len: int
    offset: int
    size_seen: int = 0
    skipping: bool = False  # inside a line longer than max_line_bytes
    rotated: bool = False  # no longer found by the glob
    last_growth: float = 0.0
    fd: int = -1
    seen: tuple[int, int] = (-1, -1)  # (size, mtime) at the last read
    held: tuple[int, float] | None = None  # multiline: (offset, since) of a record held back
    looked_at: float = 0.0  # when a read last looked at its size

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def state(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "fp": self.fp,
            "fp_len": self.fp_len,
            "offset": self.offset,
            "size_seen": self.size_seen,
            "skipping": self.skipping,
            "rotated": self.rotated,
        }


class Follower:
    """The files of one [[logs]] table. Blocking file I/O: the tailer calls
    it from its own worker thread, never from the event loop."""

    def __init__(
        self,
        config: LogsConfig,
        saved: dict[str, Any] | None,
        counters: dict[str, list[int]],
        now: float,
    ) -> None:
        self.config = config
        self.files: dict[tuple[int, int], Followed] = {}
        self.counters = counters  # label -> COUNTERS, shared with the tailer
        self.first_use = saved is None  # start_at applies to this first scan only
        self.saved: dict[tuple[int, int], dict[str, Any]] = {
            (s["dev"], s["ino"]): s for s in (saved or {}).get("files", [])
        }
        # When the saved state's last scan ran: a rotation written after it
        # may hold lines no glob ever showed us (None: first use, nothing missed).
        self.scanned_at: float | None = (saved or {}).get("seen_at")
        # (dev, ino) -> (fp, fp_len, offset, closed at): files read to their end
        self.closed: dict[tuple[int, int], tuple[int, int, int, float]] = {
            (c[0], c[1]): (c[2], c[3], c[4], c[5]) for c in (saved or {}).get("closed", [])
        }
        self.unreadable: set[str] = set()  # paths we already logged as unreadable
        self.directories: set[str] = set()
        self.rescued: list[Chunk] = []  # lines read from a copytruncate copy
        self.changed = True  # anything to commit since the tailer last took the state
        self.urgent = False  # the set of files changed: commit without waiting
        self.spare: list[bytearray] = []  # read buffers to reuse (recycle)
        self._backlog = False  # the last read() filled a buffer: a backlog is being read
        self._turn = 0  # where the next read() starts among the files
        self._exclusions: dict[str, bool] = {}  # path -> excluded (fnmatch is not cheap)
        multiline = config.multiline
        # MULTILINE: `^` must match at a line's start inside a chunk too
        start = re.compile(multiline.pattern.encode(), re.MULTILINE) if multiline else None
        self.record_start = start
        self.holding = False  # a record was held back by the last read: look again soon
        since = self.scanned_at
        self.scan(now)
        self._restore_rotated(now)
        if since is not None:
            self._adopt_unseen_rotations(since, now)
        self.first_use = False

    # -- counters -------------------------------------------------------------------

    def count(self, label: str, which: int, n: int) -> None:
        self.counters.setdefault(label, [0] * len(COUNTERS))[which] += n
        self.changed = True

    # -- finding files ------------------------------------------------------------------

    def _excluded(self, path: str) -> bool:
        known = self._exclusions.get(path)
        if known is None:
            if len(self._exclusions) > 100_000:
                self._exclusions.clear()
            known = self._exclusions[path] = self.config.excludes(path)
        return known

    def _glob(self) -> dict[tuple[int, int], tuple[str, os.stat_result]]:
        found: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        dirs = set()
        for pattern in self.config.paths:
            dirs.add(base_dir(pattern))
            for path in sorted(glob.glob(pattern, recursive=True)):
                if self._excluded(path):
                    continue
                try:
                    st = os.stat(path)  # follows symlinks: the target is what we read
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), (path, st))
        self.directories = {d for d in dirs if os.path.isdir(d)}
        return found

    def scan(self, now: float) -> None:
        """Match the globs against what is on disk: open new files, notice
        rotated ones. Cheap enough to run every poll_interval."""
        since, self.scanned_at = self.scanned_at, now
        found = self._glob()
        # New files first: a copy is recognised by the fingerprints of the
        # files we follow as they were, before any truncation is handled.
        for key, (path, st) in found.items():
            if key not in self.files:
                self._open(path, st, now)
        rotated = False
        for key, f in list(self.files.items()):
            if key in found:
                if (f.path, f.rotated) != (found[key][0], False):
                    f.path, f.rotated, self.changed = found[key][0], False, True
            elif not f.rotated:
                f.rotated, self.changed, self.urgent = True, True, True
                f.last_growth = now
                rotated = True
        if rotated and since is not None:
            # more than one rotation since the last scan leaves files no glob shows
            self._adopt_unseen_rotations(since, now)

    def _open(self, path: str, st: os.stat_result, now: float, rotated_from: str = "") -> None:
        """Follow the file at `path`; `rotated_from`: a rotation no glob finds,
        found by `_adopt_unseen_rotations`, labelled with that path."""
        fd = self._fd(path)
        if fd is None:
            return
        size = os.fstat(fd).st_size
        fp_len = min(size, FP_BYTES)
        label = rotated_from or path
        f = Followed(label, st.st_dev, st.st_ino, fingerprint(fd, fp_len), fp_len, 0, fd=fd)
        f.rotated, f.last_growth, f.looked_at = bool(rotated_from), now, now
        saved = self.saved.get(f.key)
        if saved is not None and not saved["fp_len"]:
            # empty when last seen (so nothing was read from it): that says
            # nothing of what the inode holds now, which may be a copy
            del self.saved[f.key]
            saved = None
        if saved is not None and self._same(fd, saved):
            del self.saved[f.key]
            self._resume(f, saved, size)
        elif (closed := self._closed_offset(f.key, fd, size)) is not None:
            f.offset = closed  # read to its end before, and found again
        elif (original := self._copy_of(fd, size)) is not None:
            # copytruncate's copy (or any copy) of a file we follow: its
            # first `original.offset` bytes were read from the original.
            f.offset = min(original.offset, size)
            original.offset = max(original.offset, size)
            log.info("log_file_copy_recognised", file=path, copy_of=original.path)
        elif (was := self._saved_copy_of(f.key, fd, size)) is not None:
            # the same, for a file we followed before a restart whose inode
            # holds other lines now (copytruncate while we were stopped)
            f.offset = min(was["offset"], size)
            del self.saved[(was["dev"], was["ino"])]
            log.info("log_file_copy_recognised", file=path, copy_of=was["path"])
        elif self.first_use and self.config.start_at == "end":
            f.offset = _last_line_end(fd, size)
        if rotated_from:
            if f.offset >= size:  # nothing in it we have not read: remembered as it was
                os.close(fd)
                return
            log.warning("log_rotation_found_unseen", file=path, label=label, offset=f.offset)
        self.files[f.key] = f
        self.closed.pop(f.key, None)  # followed again: its offset is in the state
        self.changed = self.urgent = True  # a new file: its offset must not wait to be saved

    def _closed_offset(self, key: tuple[int, int], fd: int, size: int) -> int | None:
        """Where a file we read to its end and closed was left (None: not such a file)."""
        closed = self.closed.get(key)
        if closed is None:
            return None
        fp, fp_len, offset, _ = closed
        if not fp_len:
            return None  # closed empty: the inode, reused, may hold a copy now
        if size < fp_len or fingerprint(fd, fp_len) != fp:
            return None  # the inode holds another file now
        return min(offset, size)

    def _fd(self, path: str) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if path not in self.unreadable:
                self.unreadable.add(path)
                log.warning("log_file_unreadable", file=path, error=exc.strerror or str(exc))
            return None
        self.unreadable.discard(path)
        return fd

    def _resume(self, f: Followed, saved: dict[str, Any], size: int) -> None:
        f.offset, f.skipping, f.size_seen = saved["offset"], saved["skipping"], saved["size_seen"]
        if size < f.offset:  # truncated while we were away
            self.count(f.path, MISSED, max(0, f.size_seen - f.offset))
            f.offset, f.skipping = 0, False

    def _same(self, fd: int, saved: dict[str, Any]) -> bool:
        return bool(saved["fp_len"] == 0 or fingerprint(fd, saved["fp_len"]) == saved["fp"])

    def _copy_of(self, fd: int, size: int) -> Followed | None:
        """The followed file `fd` is a copy of: the same first FP_BYTES bytes. A
        file still shorter than that when we fingerprinted it must have been
        truncated since, or match what it holds now: two files that merely
        begin with the same header line are no copies of each other."""
        for other in self.files.values():
            if not (0 < other.fp_len <= size and fingerprint(fd, other.fp_len) == other.fp):
                continue
            if other.fp_len == FP_BYTES or _same_start(other, fd, size):
                return other
        return None

    def _saved_copy_of(self, key: tuple[int, int], fd: int, size: int) -> dict[str, Any] | None:
        """The saved file (state from before a restart) `fd` is a copy of: its
        first bytes, while the saved inode no longer holds them (truncated and
        written again, or gone). Not the saved file itself."""
        for other, saved in self.saved.items():
            fp_len = saved["fp_len"]
            if other == key or not 0 < fp_len <= size or size < saved["offset"]:
                continue  # a copy holds at least what we had read of the original
            if fingerprint(fd, fp_len) != saved["fp"]:
                continue
            # copytruncate keeps the original's inode, emptied: one that is
            # gone was renamed away or deleted, and a file that merely starts
            # alike (a fixed header) is a new one
            found = _find_in_dir(os.path.dirname(saved["path"]) or ".", other)
            held = _open_quietly(found[0]) if found is not None else None
            if held is None:
                continue
            try:
                truncated = not self._same(held, saved)
            finally:
                os.close(held)
            if truncated:
                return saved
        return None

    def _restore_rotated(self, now: float) -> None:
        """Files we followed before a restart that the globs no longer find as
        they were: renamed in their directory (rotation while stopped), copied
        and truncated (copytruncate while stopped), or gone."""
        for key, saved in self.saved.items():
            directory = os.path.dirname(saved["path"])
            found = _find_in_dir(directory, key) if key not in self.files else None
            fd = self._fd(found[0]) if found else None
            if fd is not None and not self._same(fd, saved):
                os.close(fd)  # that inode holds another file now
                fd = None
            if fd is None:
                fd, key = self._find_copy(directory, saved)
            if fd is not None:
                f = Followed(saved["path"], *key, saved["fp"], saved["fp_len"], 0, fd=fd)
                self._resume(f, saved, os.fstat(fd).st_size)
                f.rotated, f.last_growth = True, now
                self.files[key] = f
                continue
            self.count(saved["path"], MISSED, max(0, saved["size_seen"] - saved["offset"]))
            log.warning("log_file_gone", file=saved["path"], unread_from=saved["offset"])
        self.saved.clear()

    def _find_copy(
        self, directory: str, saved: dict[str, Any]
    ) -> tuple[int | None, tuple[int, int]]:
        """A file we do not follow whose first bytes are those of `saved`: what
        copytruncate made of it while we were away."""
        if not saved["fp_len"]:
            return None, (0, 0)
        for entry, st in _files_in(directory):
            key = (st.st_dev, st.st_ino)
            if key in self.files or st.st_size < saved["fp_len"] or self._excluded(entry.path):
                continue
            fd = _open_quietly(entry.path)
            if fd is not None and self._same(fd, saved):
                return fd, key
            if fd is not None:
                os.close(fd)
        return None, (0, 0)

    def _adopt_unseen_rotations(self, since: float, now: float) -> None:
        """Rotations of our files that no glob finds and that were written
        after the scan at `since`: they hold lines we never saw (a file created
        and rotated away between two scans, or while the agent was down)."""
        horizon = since - SEEN_MARGIN
        for directory, base, label in self._rotation_names():
            for entry, st in _files_in(directory):
                if not fnmatch.fnmatch(entry.name, base + "[-._]*") or self._excluded(entry.path):
                    continue
                if (st.st_dev, st.st_ino) in self.files or st.st_mtime < horizon:
                    continue
                self._open(entry.path, st, now, label or _rotated_from(entry.path, base))

    def _adopt_rotations_of(
        self,
        f: Followed,
        entries: list[tuple[os.DirEntry[str], os.stat_result]],
        since: float,
        now: float,
    ) -> None:
        """`_adopt_unseen_rotations` for one followed file, among its
        directory's `entries`: rotations of its own name written since we
        last looked at it (`since`; nothing if we never had)."""
        if not since:
            return
        base = glob.escape(os.path.basename(f.path)) + "[-._]*"
        horizon = since - SEEN_MARGIN
        for entry, st in entries:
            if not fnmatch.fnmatch(entry.name, base) or self._excluded(entry.path):
                continue
            if (st.st_dev, st.st_ino) in self.files or st.st_mtime < horizon:
                continue
            self._open(entry.path, st, now, f.path)

    def _rotation_names(self) -> set[tuple[str, str, str]]:
        """(directory, file name pattern, label) for each glob whose rotations
        can be told by name: "/var/log/app.log" rotates to app.log.1,
        app.log-20261128, ... (label "": worked out from each name)."""
        out = set()
        for pattern in self.config.paths:
            directory, base = os.path.split(pattern)
            if glob.has_magic(directory) or not base:
                continue
            out.add((directory, base, "" if glob.has_magic(base) else pattern))
        return out

    # -- reading --------------------------------------------------------------------------

    def read(self, now: float, budget: int) -> tuple[list[Chunk], bool]:
        """Complete lines from every file, up to about `budget` bytes in all.
        Returns the chunks and whether data was left unread."""
        chunks: list[Chunk] = []
        more = False
        # Each read is big enough to hold a whole line of max_line_bytes, so a
        # line that long is always cut rather than waited for.
        size = max(READ_BYTES, self.config.max_line_bytes + 1)
        self.holding = False
        if not self._backlog:
            self.spare = []  # idle since the last read: let the buffers go
        self._backlog = False
        # Each read starts at the next file, so one file's backlog cannot keep
        # the others of the table waiting step after step.
        files = list(self.files.values())
        self._turn = (self._turn + 1) % max(len(files), 1)
        for f in files[self._turn :] + files[: self._turn]:
            while budget > 0:
                chunk, left = self._read_one(f, now, size)
                if chunk is None:
                    break  # nothing new, or a partial line waiting for its newline
                chunks.append(chunk)
                budget -= len(chunk.data)
                if not left:
                    break
                self._backlog = True  # a full read: more will come, keep the buffers
            else:
                more = True
            if f.rotated and not self._has_more(f) and self._done_with(f, now):
                tail = self._close(f)
                if tail is not None:
                    chunks.append(tail)
        return chunks, more

    def _has_more(self, f: Followed) -> bool:
        try:
            return os.fstat(f.fd).st_size > f.offset
        except OSError:
            return False

    def _done_with(self, f: Followed, now: float) -> bool:
        # Deleted files too: a writer that still holds one may write more
        # (logrotate's compress without delaycompress).
        return now - f.last_growth >= self.config.rotate_wait

    def _read_one(self, f: Followed, now: float, limit: int) -> tuple[Chunk | None, bool]:
        st = os.fstat(f.fd)
        size = st.st_size
        before, f.looked_at = f.looked_at, now
        if (size, st.st_mtime_ns) == f.seen and size <= f.offset:
            return None, False  # untouched since last time: an idle file costs one fstat
        f.seen = (size, st.st_mtime_ns)
        self.changed = True
        if size < f.offset or (f.fp_len and fingerprint(f.fd, f.fp_len) != f.fp):
            # truncated: the copy of this truncation is rescued; copies of
            # later ones since we looked hold only lines we never saw
            self._truncated(f, size, before, now)
        elif size <= f.offset or not f.fp_len:
            # changed, yet no longer than what we read, or empty when we
            # last looked: maybe written and truncated since (an empty file
            # has no fingerprint to tell), and a copy holds what was written.
            # Only if a file appeared in the directory since: one stat.
            directory = os.path.dirname(f.path) or "."
            with contextlib.suppress(OSError):
                if os.stat(directory).st_mtime >= before - SEEN_MARGIN:
                    self._adopt_rotations_of(f, _entries(directory), before, now)
        if size > f.size_seen:
            f.size_seen = size
        if f.fp_len < FP_BYTES and size > f.fp_len:
            f.fp_len = min(size, FP_BYTES)
            f.fp = fingerprint(f.fd, f.fp_len)
        if size <= f.offset:
            return None, False
        # Into a reused bytearray whose partial last line is then cut off in
        # place: a fresh 4 MiB buffer per read (and a slice of it) cost a page
        # fault per 4 KiB, more than the scan itself.
        data = self._buffer(min(limit, size - f.offset))
        got = os.preadv(f.fd, [data], f.offset)
        if got < len(data):
            del data[got:]
        if not data:
            return None, False
        f.last_growth = now
        full = len(data) == limit  # before _lines cuts the partial line off
        chunk = self._lines(f, data, now)
        return chunk, f.offset < size and full

    def _buffer(self, size: int) -> bytearray:
        """A read buffer of `size` bytes, recycled from an earlier step if one is spare."""
        if not self.spare:
            return bytearray(size)
        buf = self.spare.pop()
        if len(buf) < size:
            buf += bytes(size - len(buf))  # within its allocation: no new pages
        elif len(buf) > size:
            del buf[size:]
        return buf

    def recycle(self, chunks: list[Chunk]) -> None:
        """Take back the read buffers of chunks the tailer is done with (nothing
        may hold on to a chunk's data after processing it). Kept only while
        reading goes on at full size, so an idle agent holds none."""
        for chunk in chunks:
            data = chunk.data
            big = isinstance(data, bytearray) and len(data) >= READ_BYTES // 2
            if big and len(self.spare) < SPARE_BUFFERS:
                self.spare.append(data)  # type: ignore[arg-type]

    def _lines(self, f: Followed, data: bytearray, now: float) -> Chunk | None:
        """Consume the complete lines at the start of `data`; cut long lines;
        with multiline, hold back a record that may not be complete yet."""
        limit = self.config.max_line_bytes
        end = data.rfind(b"\n")
        if end < 0:  # no newline yet
            if f.skipping:
                f.offset += len(data)
            elif len(data) >= limit:
                f.offset += len(data)
                f.skipping = True
                self.count(f.path, TRUNCATED, 1)
                return self._emit(f, data[:limit] + b"\n")
            return None
        del data[end + 1 :]  # in place: the partial line is read again next time
        body: Data = data
        f.offset += len(body)
        if f.skipping:  # the end of a line we already cut
            cut = body.find(b"\n") + 1
            body = body[cut:]
            f.skipping = False
            if not body:
                return None
        body = self._cut_long_lines(f, body, limit)
        if self.record_start is not None:
            body = self._hold_last_record(f, body, now)
            if not body:
                return None
        return self._emit(f, body)

    def _hold_last_record(self, f: Followed, body: Data, now: float) -> Data:
        """The last record of `body` (from its last start line on) is held
        back, its bytes read again next time, until a line that starts
        another record comes, `multiline_timeout` passes or it reaches
        max_line_bytes. The offset stops at its start, so a kill -9 reads
        it again whole: a record is committed once, like a line."""
        assert self.record_start is not None
        last = body.rfind(b"\n", 0, len(body) - 1) + 1  # the start of the last line
        while last > 0 and not self.record_start.match(body, last):
            last = body.rfind(b"\n", 0, last - 1) + 1
        if last == 0 and not self.record_start.match(body, 0):
            return body  # continuations of a record already sent: on their own
        pending = len(body) - last
        at = f.offset - pending
        since = f.held[1] if f.held is not None and f.held[0] == at else now
        if now - since >= self.config.multiline_timeout or pending >= self.config.max_line_bytes:
            f.held = None
            return body
        f.held = (at, since)
        f.offset = at
        self.holding = True
        return body[:last]

    def _cut_long_lines(self, f: Followed, body: Data, limit: int) -> Data:
        # A line of `limit` bytes or more holds a whole newline-free window of
        # limit/2 bytes at a multiple of limit/2: a few finds per MiB, in C.
        window = max(1, limit // 2)
        if len(body) <= limit or all(
            body.find(b"\n", i, i + window) >= 0 for i in range(0, len(body) - window, window)
        ):
            return body
        out, pos = [], 0
        while pos < len(body):
            nl = body.find(b"\n", pos)
            if nl - pos > limit:
                out.append(body[pos : pos + limit] + b"\n")
                self.count(f.path, TRUNCATED, 1)
            else:
                out.append(body[pos : nl + 1])
            pos = nl + 1
        return b"".join(out)

    def _emit(self, f: Followed, body: Data) -> Chunk:
        lines = body.count(b"\n")
        self.count(f.path, LINES, lines)
        self.count(f.path, BYTES, len(body))
        if self.record_start is not None:
            body, lines = self._records(body)
        return Chunk(f.path, body, lines)

    def _records(self, body: Data) -> tuple[bytes, int]:
        """Multiline: each record's lines joined by RECORD_SEP, so the rules
        and detectors take a record as one line (rules.py turns it back)."""
        assert self.record_start is not None
        records: list[bytes] = []
        for line in bytes(body).split(b"\n")[:-1]:
            if records and not self.record_start.match(line):
                records[-1] += RECORD_SEP + line
            else:
                records.append(line)
        return b"\n".join(records) + b"\n", len(records)

    def _truncated(self, f: Followed, size: int, before: float, now: float) -> None:
        """Same inode, shorter than our offset or with other first bytes:
        copytruncate (or a rewrite). Read what we can from the copy first,
        then any later copy (one directory listing for both)."""
        entries = _entries(os.path.dirname(f.path) or ".")
        rescued = self._read_from_copy(f, entries)
        self._adopt_rotations_of(f, entries, before, now)
        lost = max(0, f.size_seen - max(f.offset, rescued))
        if lost:
            self.count(f.path, MISSED, lost)
        log.info("log_file_truncated", file=f.path, offset=f.offset, size=size, missed=lost)
        f.offset, f.skipping, f.size_seen = 0, False, size
        f.fp_len = min(size, FP_BYTES)
        f.fp = fingerprint(f.fd, f.fp_len)

    def _read_from_copy(
        self, f: Followed, entries: list[tuple[os.DirEntry[str], os.stat_result]]
    ) -> int:
        """The rest of `f` from a copy next to it (among `entries`, its
        directory's files); returns how far the copy went (0 if none). Its
        lines are handed out with f's label."""
        if not f.fp_len:
            return 0
        for entry, st in entries:
            key = (st.st_dev, st.st_ino)
            if key == f.key or key in self.files or st.st_size < max(f.offset, f.fp_len):
                continue
            fd = _open_quietly(entry.path)
            if fd is None:
                continue  # unreadable (btmp, say): the copy may be the next one
            try:
                if fingerprint(fd, f.fp_len) != f.fp:
                    continue
                rest = os.pread(fd, min(st.st_size - f.offset, MAX_RESCUE), f.offset)
                copy_fp_len = min(st.st_size, FP_BYTES)
                copy_fp = fingerprint(fd, copy_fp_len)
            except OSError:
                continue
            finally:
                os.close(fd)
            if rest:
                self.rescued.append(self._whole(f, rest))
            # read to its end: a glob or the rotation search that finds the
            # copy later starts there, after a restart too
            self.closed[key] = (copy_fp, copy_fp_len, st.st_size, time.time())
            return f.offset + len(rest)
        return 0

    def _whole(self, f: Followed, data: bytes) -> Chunk:
        """All of `data` as lines, a final partial line included (no more will come)."""
        if f.skipping:
            cut = data.find(b"\n") + 1
            data = data[cut:] if cut else b""
            f.skipping = False
        if data and not data.endswith(b"\n"):
            data += b"\n"
        return self._emit(f, self._cut_long_lines(f, data, self.config.max_line_bytes))

    def _close(self, f: Followed) -> Chunk | None:
        """Done with a rotated or deleted file: its partial last line is complete now."""
        rest = b""
        with contextlib.suppress(OSError):
            # a held record (up to max_line_bytes) and a partial last line
            rest = os.pread(f.fd, 2 * self.config.max_line_bytes, f.offset)
        os.close(f.fd)
        del self.files[f.key]
        self.changed = True
        self.closed[f.key] = (f.fp, f.fp_len, f.offset + len(rest), time.time())
        log.info("log_file_closed", file=f.path, offset=f.offset + len(rest))
        if not rest:
            return None
        f.offset += len(rest)
        chunk = self._whole(f, rest)
        return chunk if chunk.lines else None

    def labels(self) -> set[str]:
        """The `file` labels of what is followed now."""
        return {f.path for f in self.files.values()}

    def take_rescued(self) -> list[Chunk]:
        out, self.rescued = self.rescued, []
        return out

    def state(self) -> dict[str, Any]:
        now = time.time()
        recent = sorted(
            ((k, v) for k, v in self.closed.items() if now - v[3] < CLOSED_KEEP),
            key=lambda kv: kv[1][3],
        )[-CLOSED_MAX:]
        self.closed = dict(recent)
        return {
            "files": [f.state() for f in self.files.values()],
            "seen_at": self.scanned_at,
            "closed": [[*k, *v] for k, v in recent],
        }

    def close(self) -> None:
        for f in self.files.values():
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self.files.clear()


def _entries(directory: str) -> list[tuple[os.DirEntry[str], os.stat_result]]:
    return list(_files_in(directory))


def _files_in(directory: str) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """The regular files in `directory` with their stat (links followed). An
    entry that vanishes or cannot be looked at is skipped on its own: a search
    never ends at the first one."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:
                    continue
                yield entry, st
    except OSError:
        return


def _same_start(original: Followed, fd: int, size: int) -> bool:
    """Is `fd` a copy of `original`, a file whose fingerprint is short? Yes if
    the original no longer starts as it did (copytruncate truncated it), or
    is at least as long (a copy is a snapshot of it) and both hold the same
    bytes (up to COMPARE_BYTES)."""
    try:
        if fingerprint(original.fd, original.fp_len) != original.fp:
            return True
        now = os.fstat(original.fd).st_size
        n = min(size, COMPARE_BYTES)
        return now >= size and os.pread(original.fd, n, 0) == os.pread(fd, n, 0)
    except OSError:
        return False


def _open_quietly(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _find_in_dir(directory: str, key: tuple[int, int]) -> tuple[str, os.stat_result] | None:
    for entry, st in _files_in(directory):
        if (st.st_dev, st.st_ino) == key:
            return entry.path, st
    return None


def _rotated_from(path: str, base: str) -> str:
    """The path a rotation was made from: "/l/x.log.1" for base "*.log" gives "/l/x.log"."""
    directory, name = os.path.split(path)
    for end in range(len(name) - 1, 0, -1):
        if name[end] in ".-_" and fnmatch.fnmatch(name[:end], base):
            return os.path.join(directory, name[:end])
    return path


def _last_line_end(fd: int, size: int) -> int:
    """Where the last complete line ends: "start at the end" must not begin mid-line."""
    start = max(0, size - 65536)
    data = os.pread(fd, size - start, start)
    nl = data.rfind(b"\n")
    return start + nl + 1 if nl >= 0 else start
