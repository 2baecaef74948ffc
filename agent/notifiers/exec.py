"""exec: runs `command` with the alert as JSON on stdin and as VIGIL_ALERT_*
variables; how remediation (restarting a service) is wired. Works with the
network down and keeps nothing across a restart.

At most `max_concurrent` runs at once, up to EXEC_MAX_WAITING more wait
(beyond that: dropped), at most `max_per_hour` started in any hour (beyond
that: skipped). Each run gets a new session, so after `timeout` (or at
stop) the whole process group is killed, children included. Output goes to
a temporary file, not a pipe, so a daemon a remediation script starts
cannot hold us up by keeping the pipe open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from agent.core.alert import Alert
from agent.core.schema import Duration, Invalid, opt
from agent.notifiers.base import NOTIFIER_TYPES, STOP_GRACE, Notifier, NotifierConfig
from agent.notifiers.payloads import alert_env, alert_json

log = structlog.get_logger()

EXEC_MAX_WAITING = 100  # exec runs waiting for a slot; more are dropped
OUTPUT_TAIL = 2048  # bytes of an exec command's output kept for the log


@dataclass(frozen=True, kw_only=True)
class ExecConfig(NotifierConfig):
    command: tuple[str, ...] = ()
    timeout: Duration = opt(10.0, min=0.01)  # the whole run
    max_concurrent: int = opt(2, min=1)
    max_per_hour: int = opt(20, min=1)

    def __post_init__(self) -> None:
        if not self.command:
            raise Invalid(
                'type "exec" needs command, an array like ["/usr/bin/x", "arg"]', "command"
            )
        if not self.command[0]:
            raise Invalid("the program (command[0]) must not be empty", "command")


@NOTIFIER_TYPES.register("exec")
class ExecNotifier(Notifier[ExecConfig]):
    Config = ExecConfig

    def __init__(
        self,
        config: ExecConfig,
        state_dir: Path,
        host: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, state_dir, host)
        self.clock = clock
        self.slots = asyncio.Semaphore(config.max_concurrent)
        self.started: deque[float] = deque()  # when runs were accepted, for max_per_hour
        self.tasks: set[asyncio.Task[None]] = set()
        self.waiting = 0
        self.running = 0
        self.rate_limited = 0

    def queued(self) -> int:
        return self.waiting

    def status(self) -> dict[str, Any]:
        return {**super().status(), "running": self.running, "rate_limited": self.rate_limited}

    async def send(self, alert: Alert) -> None:
        if not self.wants(alert):
            return
        now = self.clock()
        while self.started and now - self.started[0] >= 3600.0:
            self.started.popleft()
        if len(self.started) >= self.config.max_per_hour:
            self.rate_limited += 1
            log.warning(
                "notifier_rate_limited",
                notifier=self.name,
                rule=alert.rule,
                state=alert.state,
                max_per_hour=self.config.max_per_hour,
            )
            return
        if self.waiting >= EXEC_MAX_WAITING:
            self.dropped += 1
            log.warning("notifier_queue_full", notifier=self.name, rule=alert.rule)
            return
        self.started.append(now)
        self.waiting += 1
        task = asyncio.create_task(self._run(alert), name=f"notifier:{self.name}")
        self.tasks.add(task)  # asyncio keeps only weak references to tasks
        task.add_done_callback(self.tasks.discard)

    async def _run(self, alert: Alert) -> None:
        try:
            await self.slots.acquire()
        except asyncio.CancelledError:
            self.waiting -= 1
            self.dropped += 1
            raise
        self.waiting -= 1
        self.running += 1
        try:
            await self._execute(alert)
        except Exception as exc:  # never let one run take the notifier down
            self.failed += 1
            self._error("notifier_exec_failed", f"{type(exc).__name__}: {exc}", rule=alert.rule)
        finally:
            self.running -= 1
            self.slots.release()

    async def _execute(self, alert: Alert) -> None:
        command, timeout = self.config.command, self.config.timeout
        data = json.dumps(alert_json(alert)).encode()
        import tempfile  # loaded by the first run, not by every agent

        out = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**os.environ, **alert_env(alert)},
                    start_new_session=True,  # its own process group: killpg reaches children
                )
            except OSError as exc:
                self.failed += 1
                self._error(
                    "notifier_exec_failed", f"cannot run {command[0]}: {exc}", rule=alert.rule
                )
                return
            try:
                code = await asyncio.wait_for(_feed(proc, data), timeout)
            except asyncio.TimeoutError:
                _kill_group(proc.pid)
                await proc.wait()
                self.failed += 1
                output = await asyncio.to_thread(_tail, out)
                self._error(
                    "notifier_exec_failed",
                    f"timed out after {timeout:g}s; its process group was killed",
                    rule=alert.rule,
                    output=output,
                )
                return
            except asyncio.CancelledError:  # stop(): take its children with it
                _kill_group(proc.pid)
                await proc.wait()  # reaped, and its transport closed with the loop still up
                raise
            output = await asyncio.to_thread(_tail, out)
        finally:
            out.close()
        if code != 0:
            self.failed += 1
            status = f"signal {-code}" if code < 0 else f"status {code}"
            self._error(
                "notifier_exec_failed", f"exited with {status}", rule=alert.rule, output=output
            )
            return
        self.sent += 1
        log.info("notifier_exec_done", notifier=self.name, rule=alert.rule, state=alert.state)

    async def stop(self) -> None:
        """Runs still going after STOP_GRACE are killed; waiting ones are dropped."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=STOP_GRACE)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> int:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # it did not read its stdin: fine
    finally:
        proc.stdin.close()
    return await proc.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _tail(out: IO[bytes]) -> str:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - OUTPUT_TAIL))
    return out.read().decode(errors="replace").strip()
