"""Notifiers: where an alert's transitions go.

Routing. The engine hands an alert to `route()`: the journal always, the
notifiers the rule names in `notify = [...]`, and every notifier whose
`severities` include the alert's. A notifier with `resolved = false` skips
resolutions itself, in `send`, so no caller can forget it. `send` never
raises (an error is logged, counted and kept in `status()["last_error"]`)
and returns quickly.

Local notifiers work with the network down and keep nothing across a
restart:

- journal: one structlog line, event="alert", with the alert's fields.
- exec: runs `command` in a new session with the alert as JSON on stdin
  and as VIGIL_ALERT_* variables; at most `max_concurrent` at once, up to
  EXEC_MAX_WAITING more wait (beyond that: dropped), at most
  `max_per_hour` started in any hour (beyond that: skipped). After
  `timeout` the whole process group is killed. Output goes to a temporary
  file, not a pipe, so a daemon a remediation script starts cannot hold
  us up by keeping the pipe open.
- file: one JSON line per notification appended (O_APPEND, fsync per
  line, mode 0640), opened per line so logrotate's rename just works.

Remote notifiers (webhook, alertmanager) queue durably: `send` returns once
the notification is a file `STATE_DIR/notify/NAME/<20-digit seq>.json`
({"queued_at": ..., "alert": {...}}), written to a temporary name,
fsynced, renamed and the directory fsynced. One sender task delivers the
queue in order, one request at a time, and deletes a file only on a 2xx.
Failures:

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

Alertmanager resolves an alert by itself `resolve_timeout` (5m by default)
after the last time it heard of it, so, as Prometheus does, the
alertmanager notifier re-posts every alert it knows is firing every
`resend_interval` while its queue is empty (so a refresh never overtakes
a queued resolution). That set is kept in `NAME/active.json` so it
survives a restart.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import json
import math
import os
import random
import re
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import structlog

from agent import __version__
from agent.core.alert import SEVERITIES, Alert
from agent.core.atomic import write_atomically
from agent.core.records import Metric, Spec, counter, gauge
from agent.core.retry import full_jitter, retry_after
from agent.core.schema import Duration, Invalid, opt

log = structlog.get_logger()

NotifierType = Literal["journal", "exec", "file", "webhook", "alertmanager"]
REMOTE = ("webhook", "alertmanager")
EXEC_MAX_WAITING = 100  # exec runs waiting for a slot; more are dropped
STOP_GRACE = 2.0  # seconds stop() gives running work before cutting it off
OUTPUT_TAIL = 2048  # bytes of an exec command's output kept for the log
_QUEUE_FILE = re.compile(r"^(\d{20})\.json$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SPECS: tuple[Spec, ...] = (
    counter("vigil_notifier_sent_total", "Notifications delivered, per notifier."),
    counter(
        "vigil_notifier_failed_total",
        "Failed runs (exec), writes (file) or delivery attempts (remote; retried).",
    ),
    counter("vigil_notifier_dropped_total", "Notifications given up: queue full, refused."),
    counter("vigil_notifier_rate_limited_total", "exec runs skipped over max_per_hour."),
    gauge("vigil_notifier_queued", "Notifications waiting: queued on disk, or exec runs waiting."),
)


# -- configuration ---------------------------------------------------------------


def _check_name(value: str) -> str | None:
    if not _NAME.match(value):
        return (
            "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit "
            f"(it names the queue directory), got {value!r}"
        )
    return None


def _check_severity(value: str) -> str | None:
    if value not in SEVERITIES:
        return f"expected one of {', '.join(SEVERITIES)}, got {value!r}"
    return None


def _check_url(value: str) -> str | None:
    if not re.match(r"^https?://[^/\s]+", value):
        return f'expected an http:// or https:// URL such as "http://127.0.0.1:9093", got {value!r}'
    return None


def _check_headers(value: Mapping[str, str]) -> str | None:
    for key, val in value.items():
        if not key or any(c in key + val for c in "\r\n"):
            return f"header {key!r}: names must be non-empty and no line breaks are allowed"
    return None


# Options that only some types read; setting one for another type is an error.
_USED_BY: dict[str, tuple[str, ...]] = {
    "command": ("exec",),
    "max_concurrent": ("exec",),
    "max_per_hour": ("exec",),
    "timeout": ("exec", *REMOTE),
    "path": ("file",),
    "url": REMOTE,
    "headers": REMOTE,
    "ca_file": REMOTE,
    "max_backoff": REMOTE,
    "max_queued": REMOTE,
    "format": ("webhook",),
    "resend_interval": ("alertmanager",),
}


@dataclass(frozen=True)
class NotifierConfig:
    """One [[notifiers]] table. See docs/alerts.md, "Notifiers"."""

    name: str = opt(check=_check_name)  # what rules' notify = [...] refer to
    type: NotifierType = opt()
    severities: tuple[str, ...] = opt((), each=_check_severity)  # also every alert of these
    resolved: bool = True  # also send resolutions
    # exec
    command: tuple[str, ...] = ()
    timeout: Duration = opt(10.0, min=0.01)  # exec: the whole run; remote: one request
    max_concurrent: int = opt(2, min=1)
    max_per_hour: int = opt(20, min=1)
    # file
    path: Path | None = None
    # webhook, alertmanager
    url: str | None = opt(None, check=_check_url)
    headers: dict[str, str] = opt(factory=dict, check=_check_headers)
    format: Literal["json", "slack"] = "json"
    ca_file: Path | None = None
    max_backoff: Duration = opt(300.0, min=0.1)
    max_queued: int = opt(10_000, min=1)
    resend_interval: Duration = opt(60.0, min=0.1)  # alertmanager: re-post firing alerts

    def __post_init__(self) -> None:
        if self.type == "exec" and not self.command:
            raise Invalid(
                'type "exec" needs command, an array like ["/usr/bin/x", "arg"]', "command"
            )
        if self.type == "exec" and not self.command[0]:
            raise Invalid("the program (command[0]) must not be empty", "command")
        if self.type == "file" and self.path is None:
            raise Invalid('type "file" needs path, the file to append to', "path")
        if self.type in REMOTE and not self.url:
            raise Invalid(f'type "{self.type}" needs url, an http:// or https:// URL', "url")
        for f in dataclasses.fields(self):
            used = _USED_BY.get(f.name)
            if used and self.type not in used and getattr(self, f.name) != _default(f):
                only = " and ".join(f'"{t}"' for t in used)
                raise Invalid(f'applies to type {only}, not "{self.type}"', f.name)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def check_notifiers(configs: Sequence[NotifierConfig]) -> str | None:
    """For `opt(check=...)` on the agent's `notifiers` array: names are unique,
    and "journal" is the journal's."""
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            return f"two notifiers are named {c.name!r}"
        if c.name == "journal" and c.type != "journal":
            return 'the name "journal" is the journal notifier\'s; choose another'
        seen.add(c.name)
    return None


# -- what is sent ------------------------------------------------------------------


def alert_json(alert: Alert) -> dict[str, Any]:
    """alert.to_dict() with a value JSON can carry: NaN (no value) -> null."""
    data = alert.to_dict()
    if not math.isfinite(data["value"]):
        data["value"] = None
    return data


def alert_env(alert: Alert) -> dict[str, str]:
    """The VIGIL_ALERT_* variables an exec command gets."""
    return {
        "VIGIL_ALERT_NAME": alert.rule,
        "VIGIL_ALERT_STATE": alert.state,
        "VIGIL_ALERT_SEVERITY": alert.severity,
        "VIGIL_ALERT_SUMMARY": alert.summary,
        "VIGIL_ALERT_VALUE": repr(alert.value) if math.isfinite(alert.value) else "",
        "VIGIL_ALERT_HOST": alert.host,
        "VIGIL_ALERT_FINGERPRINT": alert.fingerprint,
        "VIGIL_ALERT_LABELS": json.dumps(dict(alert.labels), sort_keys=True),
        "VIGIL_ALERT_REPEAT": "true" if alert.repeat else "false",
    }


def slack_text(alert: Mapping[str, Any]) -> str:
    """ "[FIRING] high HighCPUUsage on web-01: CPU at 93% on web-01" """
    return (
        f"[{str(alert['state']).upper()}] {alert['severity']} {alert['rule']} "
        f"on {alert['host']}: {alert['summary']}"
    )


def rfc3339(ts: float) -> str:
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One alert (as alert_json made it) in Alertmanager's API v2 form.
    Firing: no endsAt (Alertmanager resolves it `resolve_timeout` after the
    last post unless re-posted); resolved: endsAt = when it resolved."""
    labels = {k: str(v) for k, v in alert["labels"].items() if v != ""}
    labels.setdefault("alertname", str(alert["rule"]))
    labels.setdefault("severity", str(alert["severity"]))
    if alert["host"]:
        labels.setdefault("host", str(alert["host"]))
    annotations = {"summary": str(alert["summary"])}
    annotations.update({k: str(v) for k, v in alert.get("annotations", {}).items()})
    out: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(float(alert["starts_at"])),
    }
    if alert["state"] == "resolved":
        ends = alert.get("ends_at")
        out["endsAt"] = rfc3339(float(ends) if ends is not None else time.time())
    return out


# -- the interface -------------------------------------------------------------------


class Notifier(Protocol):
    name: str
    config: NotifierConfig

    async def start(self) -> None: ...
    async def send(self, alert: Alert) -> None: ...
    async def stop(self) -> None: ...
    def status(self) -> dict[str, Any]: ...


class _Base:
    def __init__(self, config: NotifierConfig) -> None:
        self.name = config.name
        self.config = config
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None

    def wants(self, alert: Alert) -> bool:
        return alert.state == "firing" or self.config.resolved

    def queued(self) -> int:
        return 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {
            "type": self.config.type,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": self.queued(),
            "last_error": self.last_error,
        }

    def _error(self, event: str, error: str, **fields: Any) -> None:
        self.last_error = error
        log.error(event, notifier=self.name, error=error, **fields)


class JournalNotifier(_Base):
    """A structlog line: journald keeps it, and it needs nothing else."""

    def __init__(self, config: NotifierConfig, host: str = "") -> None:
        super().__init__(config)
        self.host = host

    async def send(self, alert: Alert) -> None:
        if not self.wants(alert):
            return
        fields = alert_json(alert)
        fields["host"] = fields["host"] or self.host
        emit = log.warning if alert.state == "firing" else log.info
        emit("alert", **fields)
        self.sent += 1


# -- exec ---------------------------------------------------------------------------------


class ExecNotifier(_Base):
    def __init__(self, config: NotifierConfig, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(config)
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


# -- file ---------------------------------------------------------------------------------


class FileNotifier(_Base):
    def __init__(self, config: NotifierConfig) -> None:
        super().__init__(config)
        assert config.path is not None
        self.path = config.path
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"notify-{self.name}")
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


# -- webhook and alertmanager ------------------------------------------------------------


class _Outcome:
    DONE, RETRY = "done", "retry"


class RemoteNotifier(_Base):
    """The durable queue and its sender; subclasses say what a request is."""

    path_suffix = ""

    def __init__(
        self, config: NotifierConfig, state_dir: Path, rng: random.Random | None = None
    ) -> None:
        super().__init__(config)
        assert config.url is not None
        self.url = config.url.rstrip("/") + self.path_suffix if self.path_suffix else config.url
        self.dir = state_dir / "notify" / config.name
        self.rng = rng or random.Random()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"notify-{self.name}")
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

    async def _io(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, func, *args)

    # -- lifecycle

    async def start(self) -> None:
        import aiohttp  # only agents with a remote notifier pay for it

        seqs, removed = await self._io(_open_queue, self.dir)
        for name in removed:
            log.warning("notifier_queue_partial_write_removed", notifier=self.name, file=name)
        self.queue = seqs
        self.next_seq = (seqs[-1] + 1) if seqs else 1
        await self._bound(0)
        ssl: Any = True
        if self.config.ca_file is not None:  # reads the file: off the loop
            import ssl as ssl_module

            ssl = await self._io(
                lambda: ssl_module.create_default_context(cafile=str(self.config.ca_file))
            )
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=aiohttp.TCPConnector(ssl=ssl, limit=1),
            headers={"User-Agent": f"vigil/{__version__}"},
        )
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
            await self._io(_write_item, self.dir, seq, data)
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
            await self._io(_remove_item, self.dir, seq)

    async def _forget(self, seq: int) -> None:
        if seq in self.queue:
            self.queue.remove(seq)
        await self._io(_remove_item, self.dir, seq)

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
            item = await self._io(_read_item, self.dir, seq)
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
        import aiohttp

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


class WebhookNotifier(RemoteNotifier):
    """POSTs the alert's JSON, or {"text": ...} for Slack-compatible hooks."""

    def render(self, alerts: Sequence[Mapping[str, Any]]) -> bytes:
        (alert,) = alerts
        if self.config.format == "slack":
            return json.dumps({"text": slack_text(alert)}).encode()
        return json.dumps(alert).encode()


class AlertmanagerNotifier(RemoteNotifier):
    """Prometheus Alertmanager, API v2: POST /api/v2/alerts with a list."""

    path_suffix = "/api/v2/alerts"

    def __init__(
        self, config: NotifierConfig, state_dir: Path, rng: random.Random | None = None
    ) -> None:
        super().__init__(config, state_dir, rng)
        self.active: dict[str, dict[str, Any]] = {}  # fingerprint -> firing alert
        self.refreshed = 0.0  # loop time of the last post of the active set

    def render(self, alerts: Sequence[Mapping[str, Any]]) -> bytes:
        return json.dumps([alertmanager_alert(a) for a in alerts]).encode()

    async def start(self) -> None:
        self.active = await self._io(_read_active, self.dir)
        await super().start()

    async def send(self, alert: Alert) -> None:
        if alert.state == "firing":
            self.active[alert.fingerprint] = alert_json(alert)
        else:
            self.active.pop(alert.fingerprint, None)
        await self._save_active()
        await super().send(alert)
        self.refreshed = asyncio.get_running_loop().time()

    async def _save_active(self) -> None:
        try:
            await self._io(_write_active, self.dir, dict(self.active))
        except OSError as exc:
            self._error("notifier_state_failed", f"cannot save the firing alerts: {exc}")

    async def _refused(self, alert: Mapping[str, Any]) -> None:
        # Alertmanager will never take it: stop re-posting it too.
        if self.active.pop(str(alert.get("fingerprint")), None) is not None:
            await self._save_active()

    async def _idle(self) -> None:
        loop = asyncio.get_running_loop()
        due = self.refreshed + self.config.resend_interval - loop.time()
        if self.active and due <= 0:
            self.refreshed = loop.time()
            status, _, _ = await self._post(self.render(list(self.active.values())))
            if status is not None and not 200 <= status < 300:
                log.warning("notifier_refresh_refused", notifier=self.name, status=status)
            return
        # Not asyncio.wait_for: on 3.11 it can swallow a cancel (stop()) that
        # arrives as the event is set.
        timer = loop.call_later(due, self.wake.set) if self.active else None
        try:
            await self.wake.wait()
        finally:
            if timer is not None:
                timer.cancel()


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


def _read_item(directory: Path, seq: int) -> dict[str, Any]:
    item = json.loads(_item_path(directory, seq).read_bytes())
    if not isinstance(item, dict) or not isinstance(item.get("alert"), dict):
        raise ValueError("not a queued notification")
    return item


def _remove_item(directory: Path, seq: int) -> None:
    _item_path(directory, seq).unlink(missing_ok=True)


def _read_active(directory: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((directory / "active.json").read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning(
            "notifier_state_unreadable", file=str(directory / "active.json"), error=str(exc)
        )
        return {}
    return (
        {str(k): v for k, v in data.items() if isinstance(v, dict)}
        if isinstance(data, dict)
        else {}
    )


def _write_active(directory: Path, active: dict[str, dict[str, Any]]) -> None:
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    write_atomically(directory / "active.json", json.dumps(active).encode())


# -- building and routing ------------------------------------------------------------


def build_notifiers(
    configs: Sequence[NotifierConfig], state_dir: Path, host: str
) -> dict[str, Notifier]:
    """One notifier per config, plus "journal" when not configured. Not started."""
    out: dict[str, Notifier] = {}
    if not any(c.name == "journal" for c in configs):
        out["journal"] = JournalNotifier(NotifierConfig(name="journal", type="journal"), host)
    for c in configs:
        if c.name in out:
            raise ValueError(f"two notifiers are named {c.name!r}")
        out[c.name] = _make(c, state_dir, host)
    return out


def _make(config: NotifierConfig, state_dir: Path, host: str) -> Notifier:
    if config.type == "journal":
        return JournalNotifier(config, host)
    if config.type == "exec":
        return ExecNotifier(config)
    if config.type == "file":
        return FileNotifier(config)
    if config.type == "webhook":
        return WebhookNotifier(config, state_dir)
    return AlertmanagerNotifier(config, state_dir)


def route(alert: Alert, notify: Sequence[str], notifiers: Mapping[str, Notifier]) -> list[Notifier]:
    """Who gets `alert`: the journal, the rule's `notify` names, and every
    notifier whose `severities` include the alert's; each once."""
    chosen: dict[str, Notifier] = {}
    for name in ("journal", *notify):
        if name in notifiers:
            chosen.setdefault(name, notifiers[name])
    for name, n in notifiers.items():
        if alert.severity in n.config.severities:
            chosen.setdefault(name, n)
    return list(chosen.values())


def metrics(notifiers: Mapping[str, Notifier], ts: float) -> list[Metric]:
    """The SPECS metrics, labelled notifier=NAME and type=TYPE."""
    out: list[Metric] = []
    for name, n in notifiers.items():
        st = n.status()
        labels = {"notifier": name, "type": n.config.type}
        for key, metric in (
            ("sent", "vigil_notifier_sent_total"),
            ("failed", "vigil_notifier_failed_total"),
            ("dropped", "vigil_notifier_dropped_total"),
            ("rate_limited", "vigil_notifier_rate_limited_total"),
        ):
            if key in st:
                out.append(Metric(metric, st[key], ts, labels, "counter"))
        out.append(Metric("vigil_notifier_queued", st["queued"], ts, labels))
    return out
