"""A Hypothesis state machine drives the disk buffer through appends,
reads, acknowledgements, failed sends (rewind) and restarts, and checks it
against a plain in-memory model of what must come out, in what order."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
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
