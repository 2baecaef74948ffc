"""kill -9 of a process appending to the buffer: every append that
returned is there after reopening, in order, with no number reused."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from agent.buffer import DiskBuffer

WRITER = textwrap.dedent(
    """
    import sys
    from agent.buffer import DiskBuffer
    buf = DiskBuffer(sys.argv[1], segment_bytes=4096, max_bytes=1 << 30)
    n = buf.next_seq - 1  # record n always has sequence number n + 1
    while True:
        first, last = buf.append([{"n": n + i} for i in range(5)])
        n += 5
        buf.ack(first - 1) if first > 50 else None
        print(last, flush=True)
    """
)


def test_kill_9_while_appending_loses_nothing_that_returned(tmp_path):
    directory = tmp_path / "buffer"
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, text=True
        )
        lines = [proc.stdout.readline() for _ in range(20)]  # 20 appends have returned
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        returned = [int(x) for x in (*lines, *out.split()) if x.strip()]
        with DiskBuffer(directory, segment_bytes=4096, max_bytes=1 << 30) as buf:
            assert buf.next_seq - 1 >= returned[-1], round_  # nothing that returned is gone
            waiting = []
            while (batch := buf.read()) is not None:
                waiting.extend(r["n"] for r in batch.records)
            # contiguous and numbered as appended: record n has sequence number n + 1
            assert waiting == list(range(buf.acked, buf.next_seq - 1)), round_
