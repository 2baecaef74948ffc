"""`vigil buffer inspect|verify|repair`: look into the disk buffer while the
agent is stopped (inspect and verify also work while it runs: they only read).

- inspect: stream, acknowledged position, segments, records waiting, the
  oldest waiting record's age, records dropped so far.
- verify: a checksum pass over every frame; exit 1 if anything is damaged.
- repair: what the agent does on start (truncate a torn tail, set damaged
  files aside, keep every intact frame); refuses while an agent holds the
  state directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgpack

from agent.buffer import (
    SEGMENT_SUFFIX,
    DiskBuffer,
    FrameError,
    read_frame,
    read_ledger,
    scan_segment,
)
from agent.core.statedir import StateDirError, StateLock


def buffer_dir(state_dir: Path) -> Path:
    return state_dir / "buffer"


def _ledger(directory: Path) -> tuple[int, int, str | None]:
    """(acked, dropped, problem) read without changing anything."""
    try:
        acked, dropped, _ = read_ledger(directory / "ledger")
        return acked, dropped, None
    except FileNotFoundError:
        return 0, 0, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return 0, 0, f"ledger unreadable: {exc}"


def _oldest_ts(path: Path, after: int) -> float | None:
    """Timestamp of the first record after `after` in a segment, if records carry one."""
    with open(path, "rb") as f:
        while True:
            try:
                frame = read_frame(f)
            except FrameError:
                return None
            if frame is None:
                return None
            first, count, payload = frame
            if first + count - 1 > after:
                recs = msgpack.unpackb(payload)[max(0, after + 1 - first) :]
                stamps = [r.get("ts") for r in recs if isinstance(r, dict)]
                return min((t for t in stamps if isinstance(t, (int, float))), default=None)


def inspect(directory: Path) -> tuple[str, int]:
    if not directory.is_dir():
        return f"no buffer at {directory}\n", 0
    acked, dropped, problem = _ledger(directory)
    stream_path = directory / "stream"
    stream = stream_path.read_text().strip() if stream_path.exists() else "(none yet)"
    lines = [
        f"buffer     {directory}",
        f"stream     {stream}",
        f"acked      {acked}",
        f"dropped    {dropped} records (buffer full)",
    ]
    waiting, size, oldest = 0, 0, None
    rows = []
    for path in sorted(directory.glob("*" + SEGMENT_SUFFIX)):
        scan = scan_segment(path)
        seg_size = path.stat().st_size
        size += seg_size
        if scan.first is not None and scan.last is not None:
            waiting += max(0, scan.last - max(acked, scan.first - 1))
            if oldest is None and scan.last > acked:
                oldest = _oldest_ts(path, acked)
        state = "ok" if scan.error is None else f"DAMAGED: {scan.error}"
        rows.append(f"  {path.name}  seq {scan.first}-{scan.last}  {seg_size} bytes  {state}")
    lines.append(f"segments   {len(rows)}, {size} bytes")
    lines.append(f"waiting    {waiting} records")
    age = f"{time.time() - oldest:.0f} s" if oldest is not None else "-"
    lines.append(f"oldest     {age}")
    if problem:
        lines.append(f"problem    {problem}")
    corrupt = sorted(p.name for p in directory.glob("*.corrupt"))
    if corrupt:
        lines.append(f"set aside  {', '.join(corrupt)}")
    return "\n".join(lines + rows) + "\n", 0


def verify(directory: Path) -> tuple[str, int]:
    problems = []
    frames = 0
    for path in sorted(directory.glob("*" + SEGMENT_SUFFIX)) if directory.is_dir() else []:
        scan = scan_segment(path)
        frames += scan.frames
        if scan.error is not None:
            problems.append(f"{path.name}: {scan.error}")
    _, _, problem = _ledger(directory)
    if problem:
        problems.append(problem)
    if problems:
        return "".join(f"damaged: {p}\n" for p in problems) + "run `vigil buffer repair`\n", 1
    return f"ok: {frames} frames checked\n", 0


def repair(directory: Path, state_dir: Path) -> tuple[str, int]:
    lock = StateLock(state_dir)
    if lock.path.exists():  # the agent's own lock: held while it runs
        try:
            lock.acquire()
        except StateDirError:
            return (
                "the agent is running: stop it first (it repairs the buffer itself on start)\n",
                1,
            )
    try:
        with DiskBuffer(directory) as buf:
            done = buf.repairs
    finally:
        lock.release()
    if not done:
        return "nothing to repair\n", 0
    return "".join(f"repaired: {r}\n" for r in done), 0
