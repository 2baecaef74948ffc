"""file: one JSON line per notification appended to `path` (O_APPEND, fsync
per line, mode 0640), the file opened per line so logrotate's rename just
works. Works with the network down and keeps nothing across a restart."""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from agent.core.alert import Alert
from agent.core.schema import Invalid
from agent.core.worker import Worker
from agent.notifiers.base import NOTIFIER_TYPES, STOP_GRACE, Notifier, NotifierConfig
from agent.notifiers.payloads import alert_json


@dataclass(frozen=True, kw_only=True)
class FileConfig(NotifierConfig):
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.path is None:
            raise Invalid('type "file" needs path, the file to append to', "path")


@NOTIFIER_TYPES.register("file")
class FileNotifier(Notifier[FileConfig]):
    Config = FileConfig

    def __init__(self, config: FileConfig, state_dir: Path, host: str) -> None:
        super().__init__(config, state_dir, host)
        assert config.path is not None
        self.path = config.path
        self.thread = Worker(f"notify-{self.name}")
        self.pending: set[Future[None]] = set()

    def queued(self) -> int:
        return len(self.pending)

    async def send(self, alert: Alert) -> None:
        if not self.wants(alert):
            return
        line = (json.dumps(alert_json(alert)) + "\n").encode()
        # One worker thread: lines are written in the order they were sent.
        future = self.thread.submit(_append, self.path, line)
        self.pending.add(future)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._done, f, alert.rule))

    def _done(self, future: Future[None], rule: str) -> None:
        self.pending.discard(future)
        exc = future.exception()
        if exc is None:
            self.sent += 1
            self.last_error = None
        else:
            self.failed += 1
            self._error("notifier_write_failed", str(exc), path=str(self.path), rule=rule)

    async def stop(self) -> None:
        if self.pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in self.pending], timeout=STOP_GRACE)
        self.thread.shutdown(wait=False)


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
