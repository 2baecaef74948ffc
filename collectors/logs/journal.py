"""The systemd journal as a log source: `[[journal]]` tables.

Binding. `journalctl -o json --follow` as a subprocess, not python-systemd:
the agent runs in its own Python (a venv, or pyenv in development), where
Debian's `python3-systemd` cannot be imported, and the PyPI `systemd-python`
needs a compiler and libsystemd's headers on every host. journalctl is on
every systemd host, reads every journal format that host's journald writes,
and its JSON output carries everything needed, binary fields included
(arrays of bytes).

Reading. One journalctl per table:

    journalctl --output=json --all --merge --follow --no-tail --quiet
               [--directory=DIR] [--cursor=CURSOR] [MATCH...]

`--all` prints fields over 4 KiB and unprintable ones (else `null`);
`--merge` stops systemd 252's `--follow` from silently keeping to the
latest boot; `--no-tail` stops `--follow` from starting 10 entries before
the end (also after a cursor); `--cursor` starts at the cursor's entry,
which is dropped (or, if it was vacuumed, at the first entry after it).
Its stdout is a non-blocking pipe read from the tailer's worker thread: a
read takes what is there and never waits, so a quiet journal never blocks
the files of other tables. Each entry becomes one syslog-like line per
line of its MESSAGE,

    2024-06-14T15:16:01.000000+00:00 HOST IDENT[PID]: MESSAGE

(the shape `journalctl -o short-iso` and rsyslog write), so the rules, the
default rules and the detectors see what they see in /var/log/auth.log:
sshd's messages are the same text in both.

Exactly once. The state of a table is the cursor of the last entry handed
to the tailer. The tailer takes it at the end of a step, in the same thread,
and commits it with that step's events (agent/core/checkpoint.py), as it does a
file's offset; after a restart or a kill -9, journalctl resumes after the
committed one, so the entries read after it are read again and counted
once. The first time a table is used, `start_at = "end"`
takes the cursor of the last matching entry (`journalctl -n 1`) before
following, so nothing written between that moment and the follow is missed.

Failure. If journalctl exits (a missing directory, a bad cursor, a
journal rotated away under it), what it printed is read to its end, its
stderr logged once, and it is started again from the cursor after
RETRY_SECONDS. Entries whose JSON line is longer than MAX_ENTRY_BYTES are
skipped and counted as truncated lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import structlog

from collectors.logs.config import JournalConfig
from collectors.logs.files import BYTES, LINES, TRUNCATED, Chunk, Follower

log = structlog.get_logger("vigil.collectors.logs")

READ_BYTES = 1 << 20  # per os.read of the pipe
MAX_ENTRY_BYTES = 64 << 20  # one entry's JSON line; a longer one is skipped
RETRY_SECONDS = 5.0  # before starting journalctl again after it exited
SEEK_TIMEOUT = 60.0  # for `journalctl -n 1` on first use
SYSTEM_JOURNAL = ("/var/log/journal", "/run/log/journal")
# What the lines are made of; journalctl always adds __CURSOR and the timestamps.
FIELDS = ("MESSAGE", "SYSLOG_IDENTIFIER", "SYSLOG_PID", "_PID", "_COMM", "_HOSTNAME")
_ID128 = re.compile(r"[0-9a-f]{32}")
_UNSAFE = re.compile(r"[\s\[\]:]")  # would break the `IDENT[PID]:` header


# -- entries to lines (pure) ---------------------------------------------------------


def field_text(value: Any) -> str:
    """A field as journalctl's JSON gives it: a string, an array of bytes
    (not valid UTF-8, or unprintable), null, or an array of those when the
    field has several values (joined with spaces)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if all(isinstance(b, int) for b in value):
            try:
                return bytes(value).decode("utf-8", "replace")
            except ValueError:  # not bytes after all
                return " ".join(map(str, value))
        return " ".join(field_text(v) for v in value)
    return str(value)


def entry_lines(entry: Mapping[str, Any]) -> list[str]:
    """One journal entry as syslog-like lines, one per line of its MESSAGE:
    `ISO-TIME HOST IDENT[PID]: TEXT`."""
    try:
        usec = int(entry.get("__REALTIME_TIMESTAMP", 0))
        stamp = datetime.fromtimestamp(usec / 1e6, timezone.utc).isoformat(timespec="microseconds")
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = "1970-01-01T00:00:00.000000+00:00"
    host = _UNSAFE.sub("_", field_text(entry.get("_HOSTNAME"))) or "localhost"
    ident = field_text(entry.get("SYSLOG_IDENTIFIER")) or field_text(entry.get("_COMM"))
    ident = _UNSAFE.sub("_", ident) or "unknown"
    pid = field_text(entry.get("SYSLOG_PID")) or field_text(entry.get("_PID"))
    header = f"{stamp} {host} {ident}[{pid}]: " if pid.isdigit() else f"{stamp} {host} {ident}: "
    message = field_text(entry.get("MESSAGE")).replace("\r\n", "\n")
    pieces = message.split("\n")
    if len(pieces) > 1 and not pieces[-1]:
        pieces.pop()  # a trailing newline ends the message, it adds no line
    return [header + piece for piece in pieces]


# -- the follower ------------------------------------------------------------------------


class JournalFollower(Follower):
    """One [[journal]] table, with the interface the tailer uses for a
    table's files (scan, read, take_rescued, state, close; `changed`,
    `files`, `directories`, `config`). Called from the tailer's worker
    thread only; no call blocks on journalctl."""

    holding = False  # no record is ever held back: the journal has no multiline

    def __init__(
        self,
        config: JournalConfig,
        saved: dict[str, Any] | None,
        counters: dict[str, list[int]],
        now: float,
        journalctl: str | None = None,
    ) -> None:
        # Not Follower.__init__: there are no files to find.
        self.config = config
        self.journal = config
        self.label = config.label
        self.files = {}
        self.counters = counters
        self.directories: set[str] = set()
        self.rescued: list[Chunk] = []
        self.changed = True
        self.first_use = saved is None
        cursor = (saved or {}).get("cursor")
        self.cursor: str | None = cursor if isinstance(cursor, str) else None
        self.journalctl = journalctl or shutil.which("journalctl") or "/usr/bin/journalctl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending = bytearray()  # an entry's JSON line, not yet complete
        self.skipping = False  # inside an entry longer than MAX_ENTRY_BYTES
        self.errors = bytearray()  # journalctl's stderr
        self.resume_at: str | None = None  # the cursor journalctl was started at
        self.retry_at = 0.0
        self.reported: str | None = None  # the last problem logged, logged once
        self.scan(now)

    # -- the process --------------------------------------------------------------------

    def _base_args(self) -> list[str]:
        args = [self.journalctl, "--output=json", "--all", "--merge", "--no-pager", "--quiet"]
        args.append("--output-fields=" + ",".join(FIELDS))
        if self.journal.directory is not None:
            args.append(f"--directory={self.journal.directory}")
        return args

    def labels(self) -> set[str]:
        return {self.label}

    def scan(self, now: float) -> None:
        """Keep journalctl running; note the directories to watch."""
        self.directories = self._journal_dirs()
        if self.proc is not None or now < self.retry_at:
            return
        if self.first_use and self.journal.start_at == "end" and not self._seek_end(now):
            return
        self.first_use = False
        args = [*self._base_args(), "--follow", "--no-tail"]
        if self.cursor is not None:
            # --cursor, not --after-cursor: that one skips the first entry
            # after the seek unseen, taking it for the cursor's own, even when
            # that entry was vacuumed; here the cursor's own entry is dropped
            # by comparing cursors.
            args.append(f"--cursor={self.cursor}")
        args += self.journal.matches
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            self._problem(now, "journal_reader_unavailable", error=str(exc), retry=60.0)
            return
        assert proc.stdout is not None and proc.stderr is not None
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stderr.fileno(), False)
        self.proc = proc
        self.pending.clear()
        self.skipping = False
        self.resume_at = self.cursor
        if self.reported is None:  # not again and again while it keeps failing
            log.info("journal_reader_started", table=self.label, cursor=self.cursor)

    def _seek_end(self, now: float) -> bool:
        """First use with start_at = "end": start after the last matching
        entry there is now (none: from the beginning, there is nothing to skip)."""
        args = [*self._base_args(), "--lines=1", *self.journal.matches]
        try:
            done = subprocess.run(
                args, stdin=subprocess.DEVNULL, capture_output=True, timeout=SEEK_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._problem(now, "journal_reader_unavailable", error=str(exc), retry=60.0)
            return False
        if done.returncode != 0:
            error = done.stderr.decode("utf-8", "replace").strip()
            self._problem(now, "journal_reader_failed", error=error, code=done.returncode)
            return False
        for raw in done.stdout.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and isinstance(entry.get("__CURSOR"), str):
                    self.cursor = entry["__CURSOR"]
        self.changed = True
        return True

    def _problem(self, now: float, event: str, retry: float = RETRY_SECONDS, **info: Any) -> None:
        """Log a problem once (until it changes or journalctl runs well), retry later."""
        self.retry_at = now + retry
        text = f"{event} {sorted(info.items())}"
        if text != self.reported:
            self.reported = text
            log.warning(event, table=self.label, retry_in=retry, **info)

    def _journal_dirs(self) -> set[str]:
        """The directories journal files are written in, for change notifications."""
        bases = [str(self.journal.directory)] if self.journal.directory else SYSTEM_JOURNAL
        found = set()
        for base in bases:
            with contextlib.suppress(OSError), os.scandir(base) as entries:
                found.add(base)
                found.update(e.path for e in entries if _ID128.fullmatch(e.name) and e.is_dir())
        return found

    # -- reading ---------------------------------------------------------------------------

    def read(self, now: float, budget: int) -> tuple[list[Chunk], bool]:
        """What journalctl printed so far, as lines, up to about `budget` bytes
        of its output; never waits for more."""
        proc = self.proc
        if proc is None:
            return [], False
        assert proc.stdout is not None
        lines: list[bytes] = []
        more = eof = False
        fd = proc.stdout.fileno()
        while True:
            if budget <= 0:
                more = True
                break
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                break
            if not data:
                eof = True
                break
            budget -= len(data)
            self._feed(data, lines)
        self._drain_errors()
        if eof:
            self._exited(now)
        if not lines:
            return [], more
        self.reported = None  # it works: the next problem is news
        body = b"".join(lines)
        self.count(self.label, LINES, len(lines))
        self.count(self.label, BYTES, len(body))
        return [Chunk(self.label, body, len(lines))], more

    def _feed(self, data: bytes, out: list[bytes]) -> None:
        pending = self.pending
        if self.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self.skipping = False
            data = data[nl + 1 :]
        pending += data
        end = pending.rfind(b"\n")
        if end < 0:
            if len(pending) > MAX_ENTRY_BYTES:
                pending.clear()
                self.skipping = True
                self._skipped()
            return
        block = bytes(pending[:end])
        del pending[: end + 1]
        for raw in block.split(b"\n"):
            self._entry(raw, out)

    def _entry(self, raw: bytes, out: list[bytes]) -> None:
        if len(raw) > MAX_ENTRY_BYTES:
            self._skipped()
            return
        try:
            entry = json.loads(raw)
        except (ValueError, RecursionError):
            entry = None
        if not isinstance(entry, dict):
            log.warning(
                "journal_entry_unreadable",
                table=self.label,
                start=raw[:80].decode(errors="replace"),
            )
            return
        cursor = entry.get("__CURSOR")
        if self.resume_at is not None:  # the first entry: the cursor's own, if it still exists
            own, self.resume_at = cursor == self.resume_at, None
            if own:
                return
        limit = self.journal.max_line_bytes
        for line in entry_lines(entry):
            encoded = line.encode("utf-8", "replace")
            if len(encoded) > limit:
                encoded = encoded[:limit]
                self.count(self.label, TRUNCATED, 1)
            out.append(encoded + b"\n")
        if isinstance(cursor, str):
            self.cursor = cursor
            self.changed = True

    def _skipped(self) -> None:
        self.count(self.label, TRUNCATED, 1)
        log.warning("journal_entry_skipped", table=self.label, reason="longer than MAX_ENTRY_BYTES")

    def _drain_errors(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        proc = proc or self.proc
        if proc is None or proc.stderr is None or proc.stderr.closed:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(proc.stderr.fileno(), 65536):
                self.errors += data
                del self.errors[:-4096]  # the end says what went wrong

    def _exited(self, now: float) -> None:
        """journalctl ended: drop a partial entry, report why, start again later."""
        proc, self.proc = self.proc, None
        assert proc is not None
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self._drain_errors(proc)
        self._drain_pipes(proc)
        error = self.errors.decode("utf-8", "replace").strip()
        self.errors.clear()
        self.pending.clear()
        self.skipping = False
        if "cursor" in error.lower() and self.cursor is not None:
            # A cursor journalctl cannot parse (a damaged state file): the
            # entries since it cannot be found again; carry on from the end.
            log.error("journal_cursor_invalid", table=self.label, cursor=self.cursor, error=error)
            self.cursor, self.first_use = None, True
            self.retry_at = now
            return
        self._problem(now, "journal_reader_exited", code=code, error=error)

    def _drain_pipes(self, proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def take_rescued(self) -> list[Chunk]:
        return []

    def state(self) -> dict[str, Any]:
        # "files" keeps the shape the tailer's status and re-read accounting expect
        return {"files": [], "cursor": self.cursor}

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._drain_pipes(proc)
