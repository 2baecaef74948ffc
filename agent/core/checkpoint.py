"""State that must move in step with the disk buffer: a log file's offset
and its match counters advance exactly when the events read up to that
offset are in the buffer, so neither a restart nor a kill -9 loses or
repeats a line.

Two files cannot be written atomically together, so the state file is
tagged with the buffer position its records will end at::

    NAME           msgpack {"tag": [stream, seq] | None, "data": ...}: committed
    NAME.pending   the same, written (fsync, rename) just before the append

`commit(buffer, records, parts)` runs in the buffer's own thread, so nothing
else appends in between: write each part as NAME.pending tagged with
(stream, next_seq + len(records) - 1), append the records as one frame,
then rename each pending file over NAME. On start, `load()` keeps a pending
file only if the buffer held its tag when this run opened it (the append
finished before the crash; what this run appended since proves nothing);
otherwise the last committed state stands and the lines after it
are read again, their events not yet in the buffer. Without a hub there is
no buffer: parts are written directly.

With `[buffer] fsync = "interval"`, a power loss (not a crash) can lose the
last appends while their committed state survives: the lines of that last
interval are then neither in the buffer nor read again (docs/buffer.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgpack

from agent.core.atomic import fsync_dir, set_aside, write_atomically


class Buffer(Protocol):
    """What a commit needs of the disk buffer (agent/buffer.py's DiskBuffer)."""

    @property
    def stream(self) -> str: ...

    @property
    def next_seq(self) -> int: ...

    def append(self, records: Sequence[Any]) -> tuple[int, int]: ...


class CheckpointStore:
    """Named parts (msgpack-able values) in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.repairs: list[str] = []  # what load() had to set aside
        # pending state load() found uncommitted: how far a crashed run had got
        self.discarded: dict[str, Any] = {}

    def _path(self, name: str, pending: bool = False) -> Path:
        return self.directory / (name + (".pending" if pending else ""))

    def _write(self, path: Path, tag: list[Any] | None, data: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        packed = msgpack.packb({"tag": tag, "data": data}, use_bin_type=True)
        write_atomically(path, packed, sync_dir=False)  # the callers sync the directory once

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            if not isinstance(value, dict) or "data" not in value:
                raise ValueError("not a checkpoint")
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            aside = set_aside(path)
            self.repairs.append(f"{path.name}: unreadable ({exc}), moved to {aside.name}")
            return None
        return value

    def _sync_dir(self) -> None:
        fsync_dir(self.directory)

    def load(self, name: str, buffer: Buffer | None, opened_at: int | None = None) -> Any:
        """The committed value of part `name` (None if never written).
        `opened_at`: the buffer's next sequence number when this process
        opened it. Only what was in the buffer then can hold a crashed
        process's append; records appended since (metrics, alert events,
        before this part was loaded) must not vouch for a stale pending file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pending = self._read(self._path(name, pending=True))
        if pending is not None:
            tag = pending.get("tag")
            held = (
                buffer is not None
                and isinstance(tag, list)
                and tag[0] == buffer.stream
                and tag[1] <= (buffer.next_seq if opened_at is None else opened_at) - 1
            )
            if held:  # the append landed: this is the committed state
                os.replace(self._path(name, pending=True), self._path(name))
                self._sync_dir()
                return pending["data"]
            self._path(name, pending=True).unlink()
            self.discarded[name] = pending["data"]
        committed = self._read(self._path(name))
        return None if committed is None else committed["data"]

    def commit(
        self, buffer: Buffer | None, records: Sequence[Any], parts: Mapping[str, Any]
    ) -> None:
        """Append `records` to `buffer` and make `parts` the committed state,
        as one step as far as a crash can tell. Raises OSError (disk full)
        with nothing committed."""
        if buffer is None or not records:
            for name, data in parts.items():
                with contextlib.suppress(FileNotFoundError):  # never leave a stale tag
                    self._path(name, pending=True).unlink()
                self._write(self._path(name), None, data)
            self._sync_dir()
            return
        tag = [buffer.stream, buffer.next_seq + len(records) - 1]
        try:
            for name, data in parts.items():
                self._write(self._path(name, pending=True), tag, data)
            self._sync_dir()  # the pending files exist before the records do
            buffer.append(records)
        except BaseException:  # a full disk, or a record nothing could encode
            for name in parts:  # a pending file left behind could be taken as committed
                with contextlib.suppress(OSError):
                    self._path(name, pending=True).unlink()
            raise
        for name in parts:
            os.replace(self._path(name, pending=True), self._path(name))
        self._sync_dir()
