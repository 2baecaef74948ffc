"""The "command" check: run a Nagios-style plugin and read its verdict.

The plugin is `command`, an argv list run without a shell, stdin from
/dev/null and LC_NUMERIC=C (as Icinga does: perfdata wants "0.5", not
"0,5"). Its exit code is the status: 0 ok, 1 warning, 2 critical,
3 unknown; anything else (another code, death by a signal, a program
that cannot be started) is unknown with the reason in the message. The
message is the plugin's first line (stdout's, or stderr's when stdout
says nothing), the perfdata is parsed by perfdata.py. Only the first
64 KiB of each stream is kept; the rest is read and dropped so a chatty
plugin neither eats memory nor stalls on a full pipe.

Timeouts. The plugin runs in a session of its own, so it and every child
it starts share one process group. At `timeout` the whole group gets
SIGKILL at once, then the plugin is reaped, and the status is unknown:

- SIGKILL without a SIGTERM first: the probe must return within its
  timeout (the runner stops it HARD_STOP later), and a plugin that hung
  is the least likely to handle SIGTERM promptly. A plugin with something
  to clean up should be given its own `-t`, shorter than `timeout`.
- unknown, not critical: a plugin that hangs tells nothing about the
  target (it may be stuck on DNS or a dead NFS mount), and paging for a
  broken plugin is wrong. A plugin given its own `-t` reports its own
  timeout state before ours fires, so "slow target = critical" is one
  plugin argument away.
- The kill goes to the group id, the plugin's pid, which the kernel does
  not hand out again while any process of the group lives: it reaches
  the plugin and its children, no one else.

Out of scope: a child that moved into another session (setsid, a
daemonising double fork) is not in the group and is not killed; if it
still holds the plugin's stdout, the probe stops waiting after a short
grace. The same grace bounds a process stuck in uninterruptible sleep,
which SIGKILL cannot end until its system call returns. The output is
read to its end, so a child that keeps the plugin's stdout open after
the plugin exits holds the run until the timeout kills the group; a
child that closed it and runs on after a normal exit is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from agent.core.schema import opt
from collectors.checks.config import CHECK_TYPES, CheckConfig
from collectors.checks.model import Outcome, ProbeContext, Status
from collectors.checks.perfdata import parse_plugin_output

OUTPUT_CAP = 64 * 1024  # bytes kept of each of stdout and stderr
REAP_GRACE = 1.0  # seconds to wait for the killed group to go; under the runner's HARD_STOP
STATUSES: dict[int, Status] = {0: "ok", 1: "warning", 2: "critical", 3: "unknown"}


@CHECK_TYPES.register("command")
@dataclass(frozen=True, kw_only=True)
class CommandCheck(CheckConfig):
    # argv, run without a shell
    command: tuple[str, ...] = opt(check=lambda v: None if v else "must not be empty")

    async def probe(self, ctx: ProbeContext) -> Outcome:
        start = time.monotonic()
        program = self.command[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "LC_NUMERIC": "C"},
                start_new_session=True,  # its own process group: killpg reaches its children
            )
        except FileNotFoundError:
            return _unknown(f"not found: {program}", start)
        except PermissionError:
            return _unknown(f"not executable: {program} (permission denied)", start)
        except OSError as exc:
            return _unknown(f"cannot run {program}: {exc.strerror or exc}", start)

        assert proc.stdout is not None and proc.stderr is not None
        out = asyncio.ensure_future(_read_capped(proc.stdout))
        err = asyncio.ensure_future(_read_capped(proc.stderr))
        exited = asyncio.ensure_future(proc.wait())
        tasks: set[asyncio.Future[Any]] = {out, err, exited}
        try:
            # asyncio.wait, not wait_for: on timeout the readers keep draining
            # the pipes while the group dies, so they end at EOF, not mid-read.
            _, pending = await asyncio.wait(tasks, timeout=self.timeout)
        except asyncio.CancelledError:  # the runner's hard stop: take the group with us
            await _kill_and_reap(proc, tasks)
            raise
        if pending:
            gone = await _kill_and_reap(proc, tasks)
            note = "process group killed" if gone else "process group killed, not yet exited"
            return _unknown(f"timed out after {self.timeout:g}s ({note})", start)

        code = exited.result()
        stdout = out.result().decode(errors="replace")
        message, _, perf = parse_plugin_output(stdout)
        if not message:
            message = _first_line(err.result().decode(errors="replace"))
        latency = time.monotonic() - start
        if code in STATUSES:
            if not message and code != 0:
                message = f"exited {code} with no output"
            return Outcome(code == 0, STATUSES[code], message, latency, perf=perf)
        if code < 0:
            reason = f"killed by signal {-code}"
            with contextlib.suppress(ValueError):
                reason += f" ({signal.Signals(-code).name})"
        else:
            reason = f"exited {code}"
        message = f"{reason}: {message}" if message else reason
        return Outcome(False, "unknown", message, latency, perf=perf)


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(OUTPUT_CAP):
        if len(kept) < OUTPUT_CAP:
            kept += chunk[: OUTPUT_CAP - len(kept)]
    return bytes(kept)


async def _kill_and_reap(proc: asyncio.subprocess.Process, tasks: set[asyncio.Future[Any]]) -> bool:
    """SIGKILL the plugin's group, then wait (briefly) for it to be reaped
    and its pipes to close. False if that did not happen within REAP_GRACE."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    # The readers end at EOF once every holder of the pipes is dead; then
    # proc.wait() returns too (it waits for the pipes to close as well).
    _, pending = await asyncio.wait(tasks, timeout=REAP_GRACE)
    for task in pending:
        task.cancel()
    return not pending


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _unknown(message: str, start: float) -> Outcome:
    return Outcome(False, "unknown", message, time.monotonic() - start)
