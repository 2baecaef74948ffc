"""The disk buffer: everything the agent produces waits here until the hub
has acknowledged it, across crashes, restarts and outages.

Layout of the buffer directory::

    stream                    this buffer's stream id (32 hex digits), made once
    ledger                    one frame: the acknowledged sequence number and counters
    00000000000000000001.seg  segments, named by the first sequence number they hold
    *.corrupt                 damaged files, set aside for a person to look at

Frames. Segments and the ledger are sequences of frames::

    u32 payload length | u32 CRC-32 | u64 first seq | u32 record count | payload

little-endian; the CRC covers the first-seq and count fields and the
msgpack payload (a list of records). Record sequence numbers count records
of this stream from 1 and never repeat, so a gap tells exactly how many
records were lost. A frame is appended whole; segments are append-only and
roll over at `segment_bytes`.

Acknowledgement. `ack(seq)` writes the ledger atomically (temporary file,
fsync, rename, fsync of the directory) and deletes segments that hold only
acknowledged records. After a crash, reading resumes after the ledger's
position: a batch sent but not yet recorded as acknowledged is sent again,
which the hub's per-stream high-water mark makes harmless.

Bounded. When the segments exceed `max_bytes`, the oldest segment is
deleted even if unacknowledged, and the records it held that were not
acknowledged are counted in `dropped_records` (kept in the ledger).

Durability (the fsync policy):

- ``"batch"``: every append is fsynced before `append` returns. A power
  loss costs nothing that `append` returned for.
- ``"interval"``: appends are fsynced at most every `fsync_interval`
  seconds. A power loss can cost the records appended in the last interval
  (never more: the ledger is always fsynced). A kill -9 costs nothing, since
  written data is in the kernel's page cache.

Recovery on open never refuses to start:

- A frame that is cut short or fails its CRC at the end of the newest
  segment is a torn write: the segment is truncated before it.
- A bad frame in an older segment means the rest of that segment cannot be
  trusted: the file is moved aside as ``NAME.seg.corrupt`` and the frames
  before the damage are written back as the segment. Records lost that way
  show as a gap in sequence numbers.
- An unreadable ledger is moved aside as ``ledger.corrupt``; every record
  still in the segments is then sent again (the hub drops duplicates).
- An unreadable stream id is moved aside and restored from the copy in the
  ledger. With both unreadable a new stream begins, so its sequence numbers
  cannot collide with the old stream's at the hub; records still buffered
  are then sent again under the new stream, and the hub cannot tell them
  from new ones.

Memory does not grow with the backlog: segments are read frame by frame,
and only one small entry per segment is kept. The class does blocking file
I/O; the daemon calls it from a worker thread.
"""

from __future__ import annotations

import os
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgpack

from agent.core.atomic import fsync_dir, set_aside, write_atomically
from agent.core.records import encodable_record

HEADER = struct.Struct("<IIQI")  # payload length, crc32, first seq, record count
MAX_PAYLOAD = 64 * 1024 * 1024  # a length beyond this is damage, not data
SEGMENT_SUFFIX = ".seg"
FsyncPolicy = Literal["batch", "interval"]


class FrameError(ValueError):
    """A frame that is cut short or fails its checksum."""


def encode_frame(first_seq: int, count: int, payload: bytes) -> bytes:
    body = struct.pack("<QI", first_seq, count) + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body


def read_frame(f: BinaryIO) -> tuple[int, int, bytes] | None:
    """The next frame of `f` as (first seq, count, payload); None at a clean
    end of file; FrameError for a cut or damaged frame."""
    header = f.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise FrameError("frame header cut short")
    length, crc, first, count = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        raise FrameError(f"implausible frame length {length}")
    payload = f.read(length)
    if len(payload) < length:
        raise FrameError("frame payload cut short")
    if zlib.crc32(header[8:] + payload) != crc:
        raise FrameError("frame checksum mismatch")
    return first, count, payload


def read_ledger(path: Path) -> tuple[int, int, str | None]:
    """(acknowledged seq, dropped records, stream id or None) from a ledger
    file. FileNotFoundError if there is none; ValueError (or KeyError,
    TypeError, AttributeError) if it is damaged."""
    with open(path, "rb") as f:
        frame = read_frame(f)
    if frame is None:
        raise FrameError("ledger is empty")
    acked, _, payload = frame
    state = msgpack.unpackb(payload)
    stream = state.get("stream")
    return (
        acked,
        int(state["dropped"]),
        stream if isinstance(stream, str) and _is_stream_id(stream) else None,
    )


@dataclass
class Segment:
    path: Path
    first: int  # first sequence number it holds
    last: int  # last sequence number it holds (first - 1 when empty)
    size: int

    @property
    def records(self) -> int:
        return self.last - self.first + 1


@dataclass
class Batch:
    first: int
    last: int
    records: list[Any]
    size: int  # bytes of payload


@dataclass
class Scan:
    """What a pass over one segment found."""

    good_end: int = 0  # offset just past the last good frame
    first: int | None = None
    last: int | None = None
    frames: int = 0
    error: str | None = None


def scan_segment(path: Path) -> Scan:
    """Check every frame of a segment in order, without keeping any."""
    result = Scan()
    with open(path, "rb") as f:
        while True:
            try:
                frame = read_frame(f)
            except FrameError as exc:
                result.error = f"{exc} at offset {result.good_end}"
                return result
            if frame is None:
                return result
            first, count, _ = frame
            if result.last is not None and first != result.last + 1:
                result.error = (
                    f"sequence jumps from {result.last} to {first} at offset {result.good_end}"
                )
                return result
            result.first = first if result.first is None else result.first
            result.last = first + count - 1
            result.frames += 1
            result.good_end = f.tell()


@dataclass
class DiskBuffer:
    directory: Path
    max_bytes: int = 256 * 1024 * 1024
    fsync: FsyncPolicy = "batch"
    fsync_interval: float = 1.0
    segment_bytes: int | None = None  # default: an eighth of max_bytes, 64 KiB to 16 MiB
    clock: Callable[[], float] = time.monotonic

    stream: str = field(init=False, default="")
    acked: int = field(init=False, default=0)
    dropped_records: int = field(init=False, default=0)
    reduced_records: int = field(init=False, default=0)  # reduced to be encodable (not kept)
    next_seq: int = field(init=False, default=1)
    repairs: list[str] = field(init=False, default_factory=list)  # what opening fixed
    segments: list[Segment] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if self.segment_bytes is None:
            self.segment_bytes = min(16 << 20, max(64 << 10, self.max_bytes // 8))
        self._roll_at = min(64 << 10, self.segment_bytes)  # a sent segment this big is freed
        self._floor = 0
        self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._writer: BinaryIO | None = None
        self._last_fsync = self.clock()
        self._dirty = False
        self._cursor: tuple[int, int] | None = None  # (segment first seq, offset) to read next
        self._reader: tuple[Path, BinaryIO] | None = None
        ledger_stream = self._load_ledger()
        self.stream = self._load_stream(ledger_stream)
        self._recover_segments()
        last = self.segments[-1].last if self.segments else 0
        self.next_seq = max(self.acked, last, self._floor - 1) + 1

    # -- opening -------------------------------------------------------------

    def _set_aside(self, path: Path, why: str) -> None:
        target = set_aside(path)
        self.repairs.append(f"{path.name}: {why}; moved to {target.name}")

    def _load_stream(self, from_ledger: str | None) -> str:
        """The stream id from its file, else the copy in the ledger, else a new one."""
        path = self.directory / "stream"
        try:
            text = path.read_text().strip()
            if _is_stream_id(text):
                return text
            self._set_aside(path, "not a stream id")
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            self._set_aside(path, f"unreadable ({exc})")
        stream = from_ledger or secrets.token_hex(16)
        write_atomically(path, stream.encode() + b"\n")
        return stream

    def _load_ledger(self) -> str | None:
        """Read the acknowledged position and counters; return the stream id it names."""
        path = self.directory / "ledger"
        try:
            self.acked, self.dropped_records, stream = read_ledger(path)
            return stream
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._set_aside(path, f"unreadable ledger ({exc}); everything buffered is sent again")
            self.acked = 0
            return None

    def _recover_segments(self) -> None:
        paths = sorted(self.directory.glob("*" + SEGMENT_SUFFIX))
        # A segment is named by the first number it was to hold: even empty,
        # it proves every number below was handed out. Never reuse one.
        self._floor = max((_first_seq_of(p) for p in paths), default=0)
        for i, path in enumerate(paths):
            scan = scan_segment(path)
            if scan.error is not None:
                if i == len(paths) - 1:
                    with open(path, "r+b") as f:
                        f.truncate(scan.good_end)
                        os.fsync(f.fileno())
                    self.repairs.append(f"{path.name}: torn write ({scan.error}); truncated")
                else:
                    self._salvage(path, scan)
            if scan.first is None or scan.last is None:
                if path.exists():
                    path.unlink()
                continue
            if scan.last <= self.acked:  # acknowledged before a crash could delete it
                path.unlink()
                continue
            self.segments.append(Segment(path, scan.first, scan.last, scan.good_end))
        if self.acked == 0 and self.segments:
            # no ledger: resend everything still here
            self.acked = self.segments[0].first - 1

    def _salvage(self, path: Path, scan: Scan) -> None:
        """Keep the good frames before the damage; set the file itself aside."""
        with open(path, "rb") as f:
            good = f.read(scan.good_end)
        self._set_aside(path, f"damaged ({scan.error}); {scan.frames} good frames kept")
        if good:
            write_atomically(path, good)

    # -- writing ---------------------------------------------------------------

    def append(self, records: Sequence[Any]) -> tuple[int, int]:
        """Store `records` as one frame; return their (first, last) sequence numbers."""
        if not records:
            raise ValueError("nothing to append")
        first = self.next_seq
        frame = encode_frame(first, len(records), self._pack(records))
        writer = self._writer_for(len(frame))
        segment = self.segments[-1]
        try:
            written = 0
            while written < len(frame):  # unbuffered: a full disk can cut a write short
                written += writer.write(frame[written:]) or 0
        except OSError:
            # A full disk (or any write error): cut the partial frame off, so
            # the next append does not land after garbage, and let the caller
            # decide. Nothing already buffered is touched.
            writer.close()
            self._writer = None
            os.truncate(segment.path, segment.size)
            raise
        segment.last = first + len(records) - 1
        segment.size += len(frame)
        self.next_seq = segment.last + 1
        self._dirty = True
        if self.fsync == "batch" or self.clock() - self._last_fsync >= self.fsync_interval:
            self.sync()
        self._enforce_limit()
        return first, segment.last

    def _pack(self, records: Sequence[Any]) -> bytes:
        """The records as one msgpack payload. A record msgpack refuses (an
        integer beyond 64 bits from a log line, say) is reduced to what it
        can encode and counted, never allowed to block the records with it."""
        try:
            return msgpack.packb(list(records))  # type: ignore[no-any-return]
        except (OverflowError, TypeError, ValueError, RecursionError):
            pass
        out = []
        for record in records:
            try:
                msgpack.packb(record)
            except (OverflowError, TypeError, ValueError, RecursionError):
                record = encodable_record(record)
                self.reduced_records += 1
            out.append(record)
        return msgpack.packb(out)  # type: ignore[no-any-return]

    def _writer_for(self, frame_size: int) -> BinaryIO:
        assert self.segment_bytes is not None
        if self._writer is not None and self.segments[-1].size + frame_size <= self.segment_bytes:
            return self._writer
        if self._writer is None and self.segments:
            last = self.segments[-1]
            if last.size + frame_size <= self.segment_bytes:
                self._writer = open(last.path, "ab", buffering=0)  # noqa: SIM115
                return self._writer
        self._roll()
        assert self._writer is not None
        return self._writer

    def _roll(self) -> None:
        if self._writer is not None:
            self.sync()
            self._writer.close()
            self._writer = None
        path = self.directory / f"{self.next_seq:020d}{SEGMENT_SUFFIX}"
        if not (self.segments and self.segments[-1].path == path):  # not already begun
            self.segments.append(Segment(path, self.next_seq, self.next_seq - 1, 0))
        self._writer = open(path, "ab", buffering=0)  # noqa: SIM115 - kept for appends
        fsync_dir(self.directory)

    def sync(self) -> None:
        if self._writer is not None and self._dirty:
            os.fsync(self._writer.fileno())
        self._dirty = False
        self._last_fsync = self.clock()

    def _enforce_limit(self) -> None:
        while len(self.segments) > 1 and self.bytes > self.max_bytes:
            oldest = self.segments.pop(0)
            lost = oldest.last - max(oldest.first - 1, self.acked)
            if lost > 0:
                self.dropped_records += lost
                self.acked = max(self.acked, oldest.last)  # nothing older is waiting now
            self._close_reader(oldest.path)
            oldest.path.unlink()
            self._write_ledger()

    # -- reading and acknowledging ---------------------------------------------

    def read(self, max_records: int = 10_000, max_bytes: int = 4 << 20) -> Batch | None:
        """The next unsent records, in order: whole frames up to the limits
        (at least one frame). None when everything has been read."""
        batch: Batch | None = None
        for seg, offset, first, count, payload in self._frames_from_cursor():
            if batch is not None and (
                len(batch.records) + count > max_records or batch.size + len(payload) > max_bytes
            ):
                break
            records = msgpack.unpackb(payload)
            skip = max(0, self.acked + 1 - first)  # already acknowledged part
            if batch is None:
                batch = Batch(first + skip, first + skip - 1, [], 0)
            batch.records.extend(records[skip:])
            batch.last = first + count - 1
            batch.size += len(payload)
            self._cursor = (seg.first, offset)
        return batch if batch is not None and batch.records else None

    def _frames_from_cursor(self) -> Iterator[tuple[Segment, int, int, int, bytes]]:
        """Frames after the cursor; each with the offset just past it."""
        cursor = self._cursor
        for seg in list(self.segments):
            if cursor is not None and seg.first < cursor[0]:
                continue
            offset = cursor[1] if cursor is not None and seg.first == cursor[0] else 0
            if offset >= seg.size:
                continue
            f = self._reader_for(seg.path)
            f.seek(offset)
            while offset < seg.size:
                frame = read_frame(f)
                if frame is None:
                    break
                offset = f.tell()
                first, count, payload = frame
                if first + count - 1 <= self.acked:
                    continue
                yield seg, offset, first, count, payload

    def _reader_for(self, path: Path) -> BinaryIO:
        if self._reader is None or self._reader[0] != path:
            self._close_reader()
            self._reader = (path, open(path, "rb"))  # noqa: SIM115 - closed on switch
        return self._reader[1]

    def _close_reader(self, path: Path | None = None) -> None:
        if self._reader is not None and (path is None or self._reader[0] == path):
            self._reader[1].close()
            self._reader = None

    def rewind(self) -> None:
        """Read again from the acknowledged position (after a failed send)."""
        self._cursor = None

    def ack(self, last_seq: int) -> None:
        """The hub holds everything up to `last_seq`: record it, free space."""
        if last_seq <= self.acked:
            return
        self.acked = min(last_seq, self.next_seq - 1)
        newest = self.segments[-1] if self.segments else None
        if newest is not None and newest.last <= self.acked and newest.size >= self._roll_at:
            # All sent: start a new (empty) segment so this one can go too;
            # on a small disk the space it holds may be all there is.
            self._roll()
        # Segments first, ledger second: on a full disk the ledger's temporary
        # file needs the space they free. Safe across a crash in between: they
        # hold only records the hub has, and the newest segment (maybe empty)
        # is never deleted here, so its name keeps numbers from being reused.
        while len(self.segments) > 1 and self.segments[0].last <= self.acked:
            done = self.segments.pop(0)
            self._close_reader(done.path)
            done.path.unlink()
        self._write_ledger()

    def _write_ledger(self) -> None:
        payload = msgpack.packb({"dropped": self.dropped_records, "stream": self.stream})
        write_atomically(self.directory / "ledger", encode_frame(self.acked, 0, payload))

    # -- state -----------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def pending_records(self) -> int:
        return max(0, self.next_seq - 1 - self.acked)

    def __enter__(self) -> DiskBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sync()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._close_reader()


def _first_seq_of(path: Path) -> int:
    stem = path.name[: -len(SEGMENT_SUFFIX)]
    return int(stem) if stem.isdigit() else 0


def _is_stream_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
