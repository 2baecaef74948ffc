"""A Hypothesis state machine drives the disk buffer through appends,
reads, acknowledgements, failed sends (rewind) and restarts, and checks it
against a plain in-memory model of what must come out, in what order."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.buffer import DiskBuffer


class BufferMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-buffer-model-"))
        self.buf = DiskBuffer(self.dir, segment_bytes=256)
        self.frames: list[tuple[int, int]] = []  # (first, last) of every frame appended
        self.values: dict[int, int] = {}  # seq -> record
        self.acked = 0
        self.read_upto = 0  # last seq handed out since the last rewind or restart
        self.counter = 0

    @rule(n=st.integers(1, 6))
    def append(self, n: int) -> None:
        recs = list(range(self.counter, self.counter + n))
        self.counter += n
        first, last = self.buf.append(recs)
        expected_first = (self.frames[-1][1] if self.frames else 0) + 1
        assert (first, last) == (expected_first, expected_first + n - 1)
        self.frames.append((first, last))
        for seq, rec in zip(range(first, last + 1), recs):
            self.values[seq] = rec

    @rule(max_records=st.integers(1, 12))
    def read(self, max_records: int) -> None:
        batch = self.buf.read(max_records=max_records)
        pending = [f for f in self.frames if f[1] > self.read_upto]
        if not pending:
            assert batch is None
            return
        take = [pending[0]]
        for frame in pending[1:]:
            if sum(b - a + 1 for a, b in take) + (frame[1] - frame[0] + 1) > max_records:
                break
            take.append(frame)
        first, last = max(take[0][0], self.acked + 1), take[-1][1]
        assert batch is not None
        assert (batch.first, batch.last) == (first, last)
        assert batch.records == [self.values[s] for s in range(first, last + 1)]
        self.read_upto = last

    @rule()
    def ack(self) -> None:
        self.buf.ack(self.read_upto)
        self.acked = max(self.acked, self.read_upto)

    @rule()
    def send_failed(self) -> None:
        self.buf.rewind()
        self.read_upto = self.acked

    @rule()
    def restart(self) -> None:
        self.buf.close()
        self.buf = DiskBuffer(self.dir, segment_bytes=256)
        self.read_upto = self.acked

    @invariant()
    def counts(self) -> None:
        last = self.frames[-1][1] if self.frames else 0
        assert self.buf.pending_records == last - self.acked
        assert self.buf.next_seq == last + 1

    def teardown(self) -> None:
        self.buf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


BufferMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_buffer_behaves_like_the_model = BufferMachine.TestCase


@settings(max_examples=80, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 8)),
            st.tuples(st.just("sync"), st.just(0)),
            st.tuples(st.just("ack"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_power_loss_under_interval_fsync_keeps_what_was_synced(ops):
    """fsync = "interval": a power loss drops whatever the active segment
    held since its last fsync. What was synced survives, nothing
    acknowledged comes back, and no sequence number is handed out twice
    for records the hub may have."""
    directory = Path(tempfile.mkdtemp(prefix="vigil-buffer-power-"))
    try:
        buf = DiskBuffer(directory, fsync="interval", fsync_interval=1e9, segment_bytes=400)
        synced_size = 0  # of the active segment, at its last fsync
        active = None
        values: dict[int, int] = {}
        acked = 0
        for op, n in ops:
            if op == "append":
                first, last = buf.append(list(range(n)))
                for i, seq in enumerate(range(first, last + 1)):
                    values[seq] = i
            elif op == "sync":
                buf.sync()
                synced_size = buf.segments[-1].size if buf.segments else 0
            elif op == "ack" and buf.next_seq > 1:
                acked = buf.next_seq - 1
                buf.ack(acked)
            if buf.segments and buf.segments[-1].path != active:  # rolled: the old one was synced
                active, synced_size = buf.segments[-1].path, 0
        last_handed_out = buf.next_seq - 1
        # the power goes: the active segment loses its unsynced tail; no close, no flush
        if buf.segments and buf.segments[-1].path.exists():
            os.truncate(buf.segments[-1].path, synced_size)
        if buf._writer is not None:  # drop the dead instance's handles; unbuffered: no writes
            buf._writer.close()
            buf._writer = None
        buf._close_reader()
        again = DiskBuffer(directory, fsync="interval", fsync_interval=1e9, segment_bytes=400)
        survived = []
        while (batch := again.read(max_records=1000)) is not None:
            survived.extend(range(batch.first, batch.last + 1))
            assert batch.records == [values[s] for s in range(batch.first, batch.last + 1)]
            again.ack(batch.last)
        assert all(s > acked for s in survived)  # nothing acknowledged comes back
        assert survived == sorted(survived)
        assert not again.repairs or all("torn" in r for r in again.repairs)
        first, _ = again.append([0])
        assert first > acked  # never a number the hub may already hold
        if survived:
            assert first > survived[-1]
        assert first <= last_handed_out + 1
        again.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
