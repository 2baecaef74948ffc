"""The disk buffer: order, sequence numbers, acknowledgement, bounds, and
what survives torn writes, bit flips and garbage (in the style of
Prometheus' TestWALRepair_* and Vector's disk_v2 known_errors tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgpack
import pytest

from agent.buffer import HEADER, DiskBuffer, encode_frame, read_frame, scan_segment
from tests.conftest import small_tmpfs


def records(start: int, n: int) -> list[dict]:
    return [{"n": i, "line": f"record {i}"} for i in range(start, start + n)]


def drain(buf: DiskBuffer, ack: bool = True) -> list[dict]:
    out = []
    while (batch := buf.read(max_records=7)) is not None:
        assert batch.last - batch.first + 1 == len(batch.records)
        out.extend(batch.records)
        if ack:
            buf.ack(batch.last)
    return out


def test_append_read_ack_in_order_with_sequence_numbers(tmp_path):
    buf = DiskBuffer(tmp_path)
    assert buf.append(records(0, 3)) == (1, 3)
    assert buf.append(records(3, 2)) == (4, 5)
    batch = buf.read()
    assert (batch.first, batch.last) == (1, 5)
    assert [r["n"] for r in batch.records] == [0, 1, 2, 3, 4]
    assert buf.read() is None  # nothing new until more is appended
    buf.ack(5)
    assert buf.pending_records == 0
    buf.close()
    again = DiskBuffer(tmp_path)
    assert again.read() is None
    assert again.append(records(5, 1)) == (6, 6)  # numbers never repeat
    assert again.stream == buf.stream
    again.close()


def test_unacknowledged_records_are_read_again_after_restart_or_rewind(tmp_path):
    buf = DiskBuffer(tmp_path)
    buf.append(records(0, 4))
    buf.append(records(4, 4))
    first = buf.read(max_records=4)
    assert (first.first, first.last) == (1, 4)
    buf.rewind()  # the send failed
    assert buf.read(max_records=4).first == 1
    buf.ack(4)
    buf.close()
    with DiskBuffer(tmp_path) as reopened:
        assert [r["n"] for r in drain(reopened)] == [4, 5, 6, 7]


def test_segments_roll_and_acknowledged_ones_are_deleted(tmp_path):
    buf = DiskBuffer(tmp_path, segment_bytes=300)
    for i in range(20):
        buf.append(records(i * 3, 3))
    assert len(buf.segments) > 3
    assert [r["n"] for r in drain(buf)] == list(range(60))
    assert len(list(tmp_path.glob("*.seg"))) == 1  # only the one being written
    buf.close()
    with DiskBuffer(tmp_path) as reopened:
        assert reopened.read() is None


def test_full_buffer_drops_oldest_segment_and_counts_exactly(tmp_path):
    buf = DiskBuffer(tmp_path, max_bytes=2000, segment_bytes=500)
    total = 0
    for _ in range(40):
        buf.append(records(total, 5))
        total += 5
    assert buf.bytes <= 2000 + 500
    kept = drain(buf)
    assert buf.dropped_records > 0
    assert len(kept) + buf.dropped_records == total
    assert [r["n"] for r in kept] == list(range(buf.dropped_records, total))  # the newest
    buf.close()
    with DiskBuffer(tmp_path) as reopened:
        assert reopened.dropped_records == buf.dropped_records  # kept in the ledger


def frames_in(path: Path) -> list[int]:
    """Offsets just past each frame."""
    ends = []
    with open(path, "rb") as f:
        while read_frame(f) is not None:
            ends.append(f.tell())
    return ends


def test_torn_write_at_every_byte_offset_keeps_exactly_the_complete_frames(tmp_path):
    base = tmp_path / "base"
    buf = DiskBuffer(base)
    for i in range(4):
        buf.append(records(i * 2, 2))
    buf.ack(2)  # the first frame is acknowledged
    buf.close()
    [segment] = list(base.glob("*.seg"))
    ends = frames_in(segment)
    size = segment.stat().st_size
    for cut in range(size):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(base, work)
        with open(work / segment.name, "r+b") as f:
            f.truncate(cut)
        reopened = DiskBuffer(work)
        complete = sum(1 for end in ends if end <= cut)
        expected = list(range(2, complete * 2)) if complete > 1 else []
        assert [r["n"] for r in drain(reopened)] == expected, cut
        torn = cut not in (0, *ends)
        assert any("torn write" in r for r in reopened.repairs) == torn, cut
        # appending goes on with numbers after everything ever acknowledged or kept
        first, _ = reopened.append(records(100, 1))
        assert first == max(2, complete * 2) + 1, cut
        reopened.close()
        shutil.rmtree(work)


def test_bit_flip_in_an_older_segment_sets_it_aside_and_keeps_everything_else(tmp_path):
    buf = DiskBuffer(tmp_path, segment_bytes=400)
    for i in range(12):
        buf.append(records(i * 4, 4))
    buf.close()
    segments = sorted(tmp_path.glob("*.seg"))
    assert len(segments) >= 3
    victim = segments[1]
    ends = frames_in(victim)
    with open(victim, "r+b") as f:  # flip one bit in the payload of the second frame
        f.seek(ends[0] + HEADER.size + 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    with DiskBuffer(tmp_path) as reopened:
        assert (tmp_path / (victim.name + ".corrupt")).exists()
        assert any("damaged" in r for r in reopened.repairs)
        got = [r["n"] for r in drain(reopened)]
    # every frame before the flip in that segment survives, and all other segments
    first_of_victim = int(victim.name.split(".")[0]) - 1  # record n = seq - 1
    frames_in_victim = len(ends)
    lost = set(range(first_of_victim + 4, first_of_victim + 4 * frames_in_victim))
    assert got == [n for n in range(48) if n not in lost]


def acked_then_more(path):
    with DiskBuffer(path) as buf:
        buf.append(records(0, 3))
        buf.ack(3)
        buf.append(records(3, 3))
        return buf.stream


def test_garbage_ledger_is_set_aside_and_everything_buffered_is_resent(tmp_path):
    stream = acked_then_more(tmp_path)
    (tmp_path / "ledger").write_bytes(b"\x00garbage\xff" * 3)
    with DiskBuffer(tmp_path) as reopened:
        assert (tmp_path / "ledger.corrupt").exists()
        assert reopened.stream == stream  # same stream: the hub drops what it already has
        assert [r["n"] for r in drain(reopened)] == [0, 1, 2, 3, 4, 5]
        assert reopened.append(records(6, 1))[0] == 7


def test_garbage_stream_file_is_restored_from_the_ledger(tmp_path):
    stream = acked_then_more(tmp_path)
    (tmp_path / "stream").write_text("not hex at all\n")
    with DiskBuffer(tmp_path) as reopened:
        assert (tmp_path / "stream.corrupt").exists()
        assert reopened.stream == stream
        assert [r["n"] for r in drain(reopened)] == [3, 4, 5]


def test_both_lost_starts_a_new_stream(tmp_path):
    stream = acked_then_more(tmp_path)
    (tmp_path / "stream").unlink()
    (tmp_path / "ledger").write_bytes(b"")
    with DiskBuffer(tmp_path) as reopened:
        assert reopened.stream != stream  # its numbers cannot collide with the old stream's
        assert [r["n"] for r in drain(reopened)] == [0, 1, 2, 3, 4, 5]


def test_garbage_segment_and_stray_files_never_stop_it_opening(tmp_path):
    (tmp_path / "00000000000000000001.seg").write_bytes(b"\xde\xad\xbe\xef" * 100)
    (tmp_path / "unrelated.txt").write_text("hello")
    with DiskBuffer(tmp_path) as buf:
        assert buf.read() is None
        assert buf.append(records(0, 2)) == (1, 2)
        assert [r["n"] for r in drain(buf)] == [0, 1]


def test_frame_codec_rejects_damage():
    frame = encode_frame(7, 2, msgpack.packb([1, 2]))
    import io

    assert read_frame(io.BytesIO(frame)) == (7, 2, msgpack.packb([1, 2]))
    for cut in range(1, len(frame)):
        with pytest.raises(ValueError):
            read_frame(io.BytesIO(frame[:cut]))
    damaged = bytearray(frame)
    damaged[-1] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        read_frame(io.BytesIO(bytes(damaged)))


def test_scan_reports_a_sequence_jump(tmp_path):
    path = tmp_path / "x.seg"
    path.write_bytes(encode_frame(1, 2, b"\x90") + encode_frame(9, 1, b"\x90"))
    scan = scan_segment(path)
    assert scan.frames == 1 and "jumps from 2 to 9" in scan.error


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def test_full_disk_refuses_the_write_cleanly_and_resumes_when_space_returns(small_disk):
    import errno

    buf = DiskBuffer(small_disk / "buffer", max_bytes=64 << 20, segment_bytes=256 << 10)
    appended = 0
    with pytest.raises(OSError) as exc:
        while True:
            buf.append(records(appended, 50))
            appended += 50
    assert exc.value.errno == errno.ENOSPC
    assert buf.next_seq == appended + 1  # the refused batch took no numbers
    filler = small_disk / "filler"
    # space returns (the operator deletes something): appending works again
    for victim in sorted((small_disk / "buffer").glob("*.seg"))[:1]:
        filler.write_bytes(b"")  # nothing else to delete here: drop what was sent instead
        got = drain(buf, ack=False)
        assert [r["n"] for r in got] == list(range(appended))
        buf.ack(buf.segments[0].last)  # the hub took the oldest segment: it is deleted
        assert not victim.exists()
    first, _ = buf.append(records(appended, 50))
    assert first == appended + 1
    buf.close()
    with DiskBuffer(small_disk / "buffer") as reopened:  # nothing torn by the failed write
        assert not reopened.repairs
        assert reopened.next_seq == appended + 51


def test_numbers_are_never_reused_even_if_the_ledger_is_stale(tmp_path):
    buf = DiskBuffer(tmp_path, segment_bytes=1 << 20)
    while buf.bytes < 70_000:  # big enough that a full acknowledgement frees it
        buf.append(records(buf.next_seq - 1, 50))
    stale_ledger = (tmp_path / "ledger").read_bytes() if (tmp_path / "ledger").exists() else None
    last = buf.next_seq - 1
    buf.ack(last)  # everything sent: a fresh empty segment, the old one deleted
    assert [s.records for s in buf.segments] == [0]
    buf.close()
    # a crash between deleting the segment and writing the ledger
    if stale_ledger is None:
        (tmp_path / "ledger").unlink()
    else:
        (tmp_path / "ledger").write_bytes(stale_ledger)
    with DiskBuffer(tmp_path) as reopened:
        assert reopened.read() is None
        assert reopened.append(records(0, 1))[0] == last + 1
