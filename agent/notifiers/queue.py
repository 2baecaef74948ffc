"""The durable queue and sender loop shared by remote notifiers (webhook,
alertmanager); a subclass says what a request body is (`render`).

`send` returns once the notification is a file
`STATE_DIR/notify/NAME/<20-digit seq>.json` ({"queued_at": ..., "alert":
{...}}), written to a temporary name, fsynced, renamed and the directory
fsynced. One sender task delivers the queue in order, one request at a
time, and deletes a file only on a 2xx. Failures:

- no answer, 408, 429, 5xx: the same item again after an exponential
  backoff with full jitter (up to `max_backoff`; 429/503 honour
  Retry-After within that bound). Later items wait: order is kept.
- any other status (4xx, and 3xx: redirects are not followed): logged,
  the item dropped and counted; the queue moves on.
- a queue file that cannot be read or parsed (bit rot, a foreign file):
  logged, deleted, counted as dropped. Temporary files left by a crash
  mid-write are removed at start; their `send` never returned.
- more than `max_queued` items: the oldest are dropped and counted.

Delivery is at least once: a crash between the server's 2xx and our
unlink sends that item again. Alertmanager merges duplicates by labels.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agent.core.alert import Alert
from agent.core.atomic import write_atomically
from agent.core.http import client_session, tls_context_async
from agent.core.retry import full_jitter, retry_after
from agent.core.schema import Duration, Invalid, check_http_url, opt
from agent.core.worker import Worker
from agent.notifiers.base import STOP_GRACE, Notifier, NotifierConfig
from agent.notifiers.payloads import alert_json

log = structlog.get_logger()

_QUEUE_FILE = re.compile(r"^(\d{20})\.json$")


def _check_headers(value: Mapping[str, str]) -> str | None:
    for key, val in value.items():
        if not key or any(c in key + val for c in "\r\n"):
            return f"header {key!r}: names must be non-empty and no line breaks are allowed"
    return None


@dataclass(frozen=True, kw_only=True)
class RemoteConfig(NotifierConfig):
    """The keys of every remote type; each type subclasses it."""

    url: str = opt("", check=check_http_url)
    headers: dict[str, str] = opt(factory=dict, check=_check_headers)
    ca_file: Path | None = None
    timeout: Duration = opt(10.0, min=0.01)  # one request
    max_backoff: Duration = opt(300.0, min=0.1)
    max_queued: int = opt(10_000, min=1)

    def __post_init__(self) -> None:
        if not self.url:
            raise Invalid(f'type "{self.type}" needs url, an http:// or https:// URL', "url")


R = TypeVar("R", bound=RemoteConfig)


class _Outcome:
    DONE, RETRY = "done", "retry"


class RemoteNotifier(Notifier[R]):
    """The durable queue and its sender; subclasses say what a request is."""

    path_suffix = ""

    def __init__(
        self, config: R, state_dir: Path, host: str, rng: random.Random | None = None
    ) -> None:
        super().__init__(config, state_dir, host)
        self.url = config.url.rstrip("/") + self.path_suffix if self.path_suffix else config.url
        self.dir = state_dir / "notify" / config.name
        self.rng = rng or random.Random()
        self.thread = Worker(f"notify-{self.name}")
        self.queue: list[int] = []  # sequence numbers on disk, oldest first
        self.next_seq = 1
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.session: Any = None
        self.retries = 0
        self.last_success: float | None = None

    def render(self, alerts: Sequence[Mapping[str, Any]]) -> bytes:
        raise NotImplementedError

    def queued(self) -> int:
        return len(self.queue)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "retries": self.retries, "last_success": self.last_success}

    # -- lifecycle

    async def start(self) -> None:
        seqs, removed = await self.thread.run(_open_queue, self.dir)
        for name in removed:
            log.warning("notifier_queue_partial_write_removed", notifier=self.name, file=name)
        self.queue = seqs
        self.next_seq = (seqs[-1] + 1) if seqs else 1
        await self._bound(0)
        ca_file = str(self.config.ca_file) if self.config.ca_file is not None else ""
        tls = await tls_context_async(ca_file=ca_file)
        self.session = client_session(timeout=self.config.timeout, limit=1, tls=tls)
        self.task = asyncio.create_task(self._deliver_loop(), name=f"notifier:{self.name}")
        if self.queue:
            log.info("notifier_queue_resumed", notifier=self.name, queued=len(self.queue))

    async def stop(self) -> None:
        """Deliver what is queued for up to STOP_GRACE while the server answers;
        what is left stays on disk for the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        while self.queue and self.last_error is None and loop.time() < deadline:
            if self.task is None or self.task.done():
                break
            await asyncio.sleep(0.05)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        await asyncio.to_thread(self.thread.shutdown)

    # -- the queue

    async def send(self, alert: Alert) -> None:
        if self.wants(alert):
            await self._enqueue(alert_json(alert))

    async def _enqueue(self, alert: dict[str, Any]) -> bool:
        await self._bound(1)
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        data = json.dumps({"queued_at": time.time(), "alert": alert}).encode()
        try:
            await self.thread.run(_write_item, self.dir, seq, data)
        except OSError as exc:
            self.failed += 1
            self._error("notifier_enqueue_failed", f"cannot queue: {exc}", rule=alert["rule"])
            return False
        bisect.insort(self.queue, seq)
        self.wake.set()
        return True

    async def _bound(self, room: int) -> None:
        """Drop the oldest items until `room` more fit within max_queued."""
        while self.queue and len(self.queue) + room > self.config.max_queued:
            seq = self.queue.pop(0)
            self.dropped += 1
            log.warning("notifier_queue_full", notifier=self.name, dropped_seq=seq)
            await self.thread.run(_remove_item, self.dir, seq)

    async def _forget(self, seq: int) -> None:
        if seq in self.queue:
            self.queue.remove(seq)
        await self.thread.run(_remove_item, self.dir, seq)

    # -- delivery

    async def _deliver_loop(self) -> None:
        attempt = 0
        while True:
            if not self.queue:
                self.wake.clear()
                await self._idle()
                continue
            try:
                outcome, wait = await self._deliver(self.queue[0])
            except OSError as exc:  # the queue's disk failed: never end the loop
                self.failed += 1
                self._error("notifier_queue_failed", f"queue I/O error: {exc}")
                outcome, wait = _Outcome.RETRY, None
            if outcome == _Outcome.DONE:
                attempt = 0
                continue
            attempt += 1
            self.retries += 1
            backoff = full_jitter(attempt, self.config.max_backoff, self.rng)
            await asyncio.sleep(min(wait, self.config.max_backoff) if wait else backoff)

    async def _idle(self) -> None:
        await self.wake.wait()

    async def _deliver(self, seq: int) -> tuple[str, float | None]:
        try:
            item = await self.thread.run(read_item, self.dir, seq)
            body = self.render([item["alert"]])
            rule = str(item["alert"]["rule"])
        except FileNotFoundError:  # dropped while we were busy
            await self._forget(seq)
            return _Outcome.DONE, None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.dropped += 1
            self._error("notifier_queue_item_corrupt", f"{type(exc).__name__}: {exc}", seq=seq)
            await self._forget(seq)
            return _Outcome.DONE, None
        status, answer, after = await self._post(body)
        if status is not None and 200 <= status < 300:
            self.sent += 1
            await self._forget(seq)
            return _Outcome.DONE, None
        if status is None or status in (408, 429) or status >= 500:
            return _Outcome.RETRY, after if status in (429, 503) else None
        self.dropped += 1
        why = "redirects are not followed; " if 300 <= status < 400 else ""
        self._error(
            "notifier_refused",
            f"{self.url} answered {status}; {why}notification dropped: {answer[:200]}",
            rule=rule,
        )
        await self._forget(seq)
        await self._refused(item["alert"])
        return _Outcome.DONE, None

    async def _refused(self, alert: Mapping[str, Any]) -> None:
        pass

    async def _post(self, body: bytes) -> tuple[int | None, str, float | None]:
        """POST; (status, answer, Retry-After) or (None, error, None) with no answer."""
        import aiohttp  # loaded by client_session at start already

        headers = {"Content-Type": "application/json", **self.config.headers}
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status, answer = resp.status, await resp.text(errors="replace")
                after = retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._failed(f"{self.url} unreachable: {type(exc).__name__}: {exc}")
            return None, "", None
        if 200 <= status < 300:
            if self.last_error is not None:
                log.info("notifier_reachable_again", notifier=self.name, url=self.url)
            self.last_error = None
            self.last_success = time.time()
        elif status in (408, 429) or status >= 500:
            self._failed(f"{self.url} answered {status}: {answer[:200]}")
        return status, answer, after

    def _failed(self, error: str) -> None:
        self.failed += 1
        if error != self.last_error:
            log.warning("notifier_send_failed", notifier=self.name, error=error)
        self.last_error = error


# -- queue files (run in the notifier's thread) --------------------------------------


def _item_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:020d}.json"


def _open_queue(directory: Path) -> tuple[list[int], list[str]]:
    """The queued sequence numbers, oldest first; removes partial writes."""
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    seqs, removed = [], []
    for entry in os.scandir(directory):
        if entry.name.endswith(".tmp"):
            os.unlink(entry.path)
            removed.append(entry.name)
        elif m := _QUEUE_FILE.match(entry.name):
            seqs.append(int(m.group(1)))
    return sorted(seqs), removed


def _write_item(directory: Path, seq: int, data: bytes) -> None:
    write_atomically(_item_path(directory, seq), data)


def read_item(directory: Path, seq: int) -> dict[str, Any]:
    """One queued notification; ValueError if it is not one (cut, zeroed, foreign)."""
    item = json.loads(_item_path(directory, seq).read_bytes())
    if not isinstance(item, dict) or not isinstance(item.get("alert"), dict):
        raise ValueError("not a queued notification")
    return item


def _remove_item(directory: Path, seq: int) -> None:
    _item_path(directory, seq).unlink(missing_ok=True)
