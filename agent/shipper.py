"""The shipper: moves records from collectors through the disk buffer to the hub.

Path of a record: a collector's run hands its records to `add`; they wait
in memory until the open batch is `flush_interval` old or holds
`batch_records` records (or about `batch_bytes`), then are appended to the
disk buffer as one frame. The ship loop reads the oldest unsent records
from the buffer, POSTs them (msgpack, zstd) and advances the buffer's
ledger only on a 2xx, to the high-water mark the hub returns.

Failures:

- No answer, 5xx, 408: retry the same records after an exponential backoff
  with full jitter (a random wait up to min(max_backoff, 1 s x 2^n)), so a
  fleet coming back does not hit the hub in step.
- 429, 503: wait as long as `Retry-After` says (or the backoff).
- Any other 4xx (400 malformed, 413 too large, 415, 422 over the host's
  series limits): the hub will never take this batch. It goes to
  `STATE_DIR/deadletter/` (body and the hub's reason), is logged and
  counted, and acknowledged locally so the queue moves on.
- 401, 403: a configuration fault (wrong token, wrong host id). The data
  stays; the shipper backs off and logs `hub_auth_failed` each time, which
  alerting can use.

One request is in flight at a time, so order per stream is kept trivially.
Buffer I/O runs in one worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections.abc import Sequence
from typing import Any

import structlog

from agent import __version__
from agent.buffer import Batch, DiskBuffer
from agent.config import Config
from agent.core import h1, protocol
from agent.core.checkpoint import CheckpointStore
from agent.core.http import tls_context_async
from agent.core.records import Event, Metric, Record
from agent.core.retry import full_jitter, retry_after
from agent.core.worker import Worker
from collectors.base import Spec, counter, gauge

log = structlog.get_logger()

RECORD_BYTES_ESTIMATE = 120  # msgpack size of a typical metric record, for the byte threshold
MAX_HELD_BATCHES = 10  # how much waits in memory while the buffer cannot be written

SPECS: tuple[Spec, ...] = (
    gauge("vigil_buffer_bytes", "Bytes in the disk buffer's segments."),
    gauge("vigil_buffer_records", "Records buffered and not yet acknowledged by the hub."),
    counter("vigil_buffer_dropped_records_total", "Records dropped because the buffer was full."),
    counter(
        "vigil_buffer_reduced_records_total",
        "Records msgpack could not encode as they were (a 100-digit integer, say), "
        "stored reduced to what it can.",
    ),
    gauge("vigil_shipper_lag_seconds", "Age of the oldest record not yet acknowledged by the hub."),
    counter("vigil_shipper_sent_records_total", "Records the hub acknowledged."),
    counter("vigil_shipper_retries_total", "Sends that failed and will be tried again."),
    counter("vigil_shipper_dead_letter_batches_total", "Batches the hub refused for good."),
    counter("vigil_shipper_auth_failures_total", "Sends the hub refused for the token (401, 403)."),
    counter(
        "vigil_shipper_failovers_total",
        "Moves to the next hub after a failed send ([hub] urls with several hubs).",
    ),
    gauge(
        "vigil_shipper_last_success_timestamp_seconds",
        "When the hub last acknowledged a batch, as a Unix timestamp.",
    ),
)


class Shipper:
    def __init__(self, config: Config, token: str, rng: random.Random | None = None) -> None:
        self.config = config
        self.hubs = config.hub.targets  # in order of preference
        self.current = 0  # the hub sent to now
        self.left_first_at = 0.0  # monotonic time we moved off the first hub
        self.token = token
        self.rng = rng or random.Random()
        self.thread = Worker("buffer")
        self.buffer: DiskBuffer | None = None
        self.opened_at = 1  # the buffer's next_seq when opened
        self.deadletter = config.agent.state_dir / "deadletter"
        self.pending: list[dict[str, Any]] = []
        self.pending_since = 0.0
        self.flushed_once = False  # the first records are not held flush_interval
        self.wake = asyncio.Event()
        self._retry = asyncio.Event()  # ends a backoff early: `retry_now`
        self.tasks: list[asyncio.Task[None]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self.tls: ssl.SSLContext | None = None  # None: the system's trust store
        self.conn: h1.Connection | None = None  # kept alive between sends
        # self-metrics and status
        self.sent_records = 0
        self.retries = 0
        self.dead_letters = 0
        self.auth_failures = 0
        self.failovers = 0
        self.refused = False  # a hub refused our token since the last batch taken
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.write_error: str | None = None
        self.memory_dropped = 0  # held in memory while the disk refused, then dropped
        self.oldest_unacked_ts: float | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config.buffer
        self.buffer = await self.thread.run(
            DiskBuffer,
            self.config.agent.state_dir / "buffer",
            cfg.max_bytes,
            cfg.fsync,
            cfg.fsync_interval,
        )
        # A crashed run's appends all lie below this: what checkpoints trust
        self.opened_at = self.buffer.next_seq
        for repair in self.buffer.repairs:
            log.warning("buffer_repaired", what=repair)
        if self.config.hub.ca_file is not None:  # reads the file: off the loop
            self.tls = await tls_context_async(ca_file=str(self.config.hub.ca_file))
        self.tasks = [
            asyncio.create_task(self._flush_loop(), name="shipper:flush"),
            asyncio.create_task(self._ship_loop(), name="shipper:ship"),
        ]
        log.info(
            "shipper_started",
            hub=self.hub,
            stream=self.buffer.stream,
            waiting=self.buffer.pending_records,
        )

    async def stop(self, deadline: float) -> None:
        """Write the open batch to disk, push what can be pushed before
        `deadline` (loop time), then close. What is left waits on disk."""
        loop = asyncio.get_running_loop()
        await self.flush()
        while self.buffer is not None and self.buffer.pending_records and loop.time() < deadline:
            if self.last_error is not None:  # the hub is away: do not wait for it
                break
            await asyncio.sleep(0.05)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.conn is not None:
            await self.conn.aclose()
        if self.buffer is not None:
            await self.thread.run(self.buffer.close)
        # its work is done (awaited above): joining it would block the loop
        self.thread.shutdown(wait=False)

    async def load_checkpoint(self, store: CheckpointStore, name: str) -> Any:
        return await self.thread.run(store.load, name, self.buffer, self.opened_at)

    async def commit_checkpoint(
        self, store: CheckpointStore, records: list[dict[str, Any]], parts: dict[str, Any]
    ) -> None:
        """Append `records` and commit `parts` with them (agent/core/checkpoint.py),
        in the buffer's thread so no other append comes in between."""
        await self.thread.run(store.commit, self.buffer, records, parts)
        if records:
            self.wake.set()

    # -- collecting into batches ---------------------------------------------------

    def add(self, records: Sequence[Record]) -> None:
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.extend(r.to_dict() for r in records)
        cfg = self.config.buffer
        if (
            len(self.pending) >= cfg.batch_records
            or len(self.pending) * RECORD_BYTES_ESTIMATE >= cfg.batch_bytes
            or not self.flushed_once  # after a start (a crash), the first records at once
        ):
            self.flushed_once = True
            task = asyncio.get_running_loop().create_task(self.flush())
            self._flushes.add(task)  # asyncio keeps only weak references to tasks
            task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        if not self.pending or self.buffer is None:
            return
        batch, self.pending = self.pending, []
        limit = self.config.buffer.batch_records
        for i in range(0, len(batch), limit):
            try:
                await self.thread.run(self.buffer.append, batch[i : i + limit])
            except OSError as exc:
                # Disk full or failing: keep the rest in memory and try again at
                # the next flush, within a bound; what falls off is counted.
                self._hold(batch[i:], exc)
                break
        else:
            self.write_error = None
        self.wake.set()

    def _hold(self, records: list[dict[str, Any]], exc: OSError) -> None:
        error = f"cannot write the buffer: {exc.strerror or exc}"
        if error != self.write_error:
            log.error("buffer_write_failed", error=error, held=len(records))
        self.write_error = error
        self.pending = records + self.pending
        excess = len(self.pending) - MAX_HELD_BATCHES * self.config.buffer.batch_records
        if excess > 0:
            del self.pending[:excess]  # the oldest go first, as in the disk buffer
            self.memory_dropped += excess

    async def _flush_loop(self) -> None:
        interval = self.config.buffer.flush_interval
        while True:
            await asyncio.sleep(interval / 4)
            if self.pending and time.monotonic() - self.pending_since >= interval:
                await self.flush()

    # -- shipping --------------------------------------------------------------

    async def _ship_loop(self) -> None:
        attempt = 0
        while True:
            try:
                wait = await self._ship_one()
            except OSError as exc:  # the buffer's disk failed: never end the loop
                self._failed(f"buffer I/O error: {exc.strerror or exc}")
                wait = 0.0
            except Exception as exc:  # a bug, or a request aiohttp refuses to build
                # never end the loop silently: nothing would be delivered again
                log.error("ship_failed_unexpectedly", error=repr(exc)[:300])
                self._failed(f"unexpected error: {exc!r}"[:300], quiet=True)
                wait = 0.0
            if wait is None:
                attempt = 0
                continue
            attempt += 1
            self.retries += 1
            if self.buffer is not None:
                await self.thread.run(self.buffer.rewind)
            backoff = full_jitter(attempt, self.config.hub.max_backoff, self.rng)
            self._retry.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._retry.wait(), wait if wait > 0 else backoff)

    @property
    def hub(self) -> str:
        """The hub sent to now."""
        return self.hubs[self.current]

    def _move_on(self) -> None:
        """After a failure, the next batch goes to the next hub (if there
        are several): the same batch, so the shared store's high-water mark
        makes a replay harmless."""
        if len(self.hubs) < 2:
            return
        was = self.hub
        self.current = (self.current + 1) % len(self.hubs)
        if self.current != 0 and was == self.hubs[0]:
            self.left_first_at = time.monotonic()
        self.failovers += 1
        log.warning("hub_failover", from_hub=was, to_hub=self.hub)

    def _back_to_first(self) -> None:
        """The first hub is preferred: try it again `failback_after` after
        leaving it (one failed request if it is still away)."""
        away = time.monotonic() - self.left_first_at
        if self.current and away >= self.config.hub.failback_after:
            log.info("hub_failback", from_hub=self.hub, to_hub=self.hubs[0])
            self.current = 0

    def retry_now(self) -> None:
        """End the backoff in progress, if any (a new token came)."""
        self._retry.set()

    async def _ship_one(self) -> float | None:
        """Send the next batch, or wait for one. None when there is nothing
        to retry; otherwise how long to wait first (0: the backoff)."""
        assert self.buffer is not None
        cfg = self.config.buffer
        while True:
            self.wake.clear()  # before reading: a flush during the read still wakes us
            batch: Batch | None = await self.thread.run(
                self.buffer.read, cfg.batch_records, cfg.batch_bytes
            )
            if batch is not None:
                break
            self.oldest_unacked_ts = None
            await self.wake.wait()
        self.oldest_unacked_ts = _oldest_ts(batch.records)
        self._back_to_first()
        wait = await self._send(batch)
        if wait is not None:
            self._move_on()
        return wait

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """POST on the kept connection to this hub, or a new one, following
        a 307 or 308 as before (a token stays with its origin). A kept
        connection the hub closed while idle fails at once: that send is made
        again on a new one (the hub takes a batch once, whatever is sent twice)."""
        for _ in range(h1.MAX_REDIRECTS + 1):
            status, answer, data = await self._post_once(url, body, headers)
            location = h1.header(answer, "location")
            if status not in (307, 308) or not location:
                return status, answer, data
            url, _, headers, body = h1.redirected(url, status, location, "POST", headers, body)
        raise h1.TooManyRedirects(url)

    async def _post_once(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        kept, target = self.conn, h1.target(url)
        if kept is not None and kept.origin == h1.origin(url) and kept.reusable:
            try:
                return await kept.request("POST", target, headers, body)
            except (h1.Disconnected, ConnectionError):
                pass  # the hub closed it while idle: once more, on a new one
        elif kept is not None:
            kept.close()
        self.conn = await h1.Connection.open(url, self.tls)
        return await self.conn.request("POST", target, headers, body)

    async def _send(self, batch: Batch) -> float | None:
        """Send one batch. None when done with it (stored or dead-lettered);
        otherwise how long to wait before retrying (0: use the backoff)."""
        assert self.buffer is not None
        body = protocol.encode_batch(
            self.config.agent.host_id,
            self.buffer.stream,
            batch.first,
            batch.records,
            __version__,
            time.time(),
            self.config.agent.interval,
        )
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/msgpack",
            "Content-Encoding": "zstd",
        }
        url = self.hub.rstrip("/") + "/v1/ingest"
        try:
            async with h1.deadline(self.config.hub.timeout):
                status, answer, data = await self._post(url, protocol.compress(body), headers)
        except (h1.HttpError, TimeoutError, OSError) as exc:
            self._failed(f"hub unreachable: {type(exc).__name__}: {exc}")
            return 0.0
        text = data.decode("utf-8", "replace")
        after = retry_after(h1.header(answer, "retry-after") or None)
        if 200 <= status < 300:
            try:
                last_seq = int(json.loads(text)["last_seq"])
            except (ValueError, KeyError, TypeError):
                last_seq = batch.last
            await self.thread.run(self.buffer.ack, min(last_seq, batch.last))
            self.sent_records += batch.last - batch.first + 1
            self.last_success = time.time()
            self.refused = False
            if self.last_error is not None:
                log.info("hub_reachable_again", hub=self.hub)
            self.last_error = None
            return None
        if status in (401, 403):
            self._auth_failed(status, text)
            return 0.0
        if 400 <= status < 500 and status not in (408, 429):
            await self._dead_letter(batch, body, status, text)
            return None
        self._failed(f"hub answered {status}: {text[:200]}")
        return after if status in (429, 503) and after is not None else 0.0

    def _auth_failed(self, status: int, answer: str) -> None:
        """A configuration fault: the data stays, and the fault is a metric
        (for alert rules) and, once per episode, an event that reaches the
        hub's history when the token is fixed."""
        self.auth_failures += 1
        log.error(
            "hub_auth_failed",
            status=status,
            hub=self.hub,
            answer=answer[:200],
            host_id=self.config.agent.host_id,
        )
        # one episode until a hub takes a batch: another hub's errors in
        # between (several hubs, one of them down) do not start a new one
        first, self.refused = not self.refused, True
        self._failed(f"hub refused our token ({status}): {answer[:200]}", quiet=True)
        if first:
            message = (
                f"the hub refused this host's token ({status}); data is kept until it is fixed"
            )
            self.add(
                [
                    Event(
                        "lifecycle",
                        time.time(),
                        message,
                        "high",
                        {"status": status, "hub": self.hub},
                    )
                ]
            )

    def _failed(self, error: str, quiet: bool = False) -> None:
        if error != self.last_error and not quiet:
            log.warning("ship_failed", error=error, hub=self.hub)
        self.last_error = error

    async def _dead_letter(self, batch: Batch, body: bytes, status: int, answer: str) -> None:
        assert self.buffer is not None
        name = f"{self.buffer.stream}-{batch.first}-{batch.last}"

        def write() -> None:
            self.deadletter.mkdir(mode=0o750, parents=True, exist_ok=True)
            (self.deadletter / f"{name}.msgpack").write_bytes(body)
            (self.deadletter / f"{name}.reason").write_text(f"{status} {answer}\n")
            assert self.buffer is not None
            self.buffer.ack(batch.last)

        await self.thread.run(write)
        self.dead_letters += 1
        log.error(
            "batch_dead_lettered",
            status=status,
            first=batch.first,
            last=batch.last,
            answer=answer[:200],
            path=str(self.deadletter / f"{name}.msgpack"),
        )

    # -- self-metrics and status ----------------------------------------------------

    def metrics(self, ts: float) -> list[Record]:
        buf = self.buffer
        if buf is None:
            return []
        lag = ts - self.oldest_unacked_ts if self.oldest_unacked_ts is not None else 0.0
        out: list[Record] = [
            Metric("vigil_buffer_bytes", buf.bytes, ts),
            Metric("vigil_buffer_records", buf.pending_records + len(self.pending), ts),
            Metric(
                "vigil_buffer_dropped_records_total",
                buf.dropped_records + self.memory_dropped,
                ts,
                type="counter",
            ),
            Metric("vigil_buffer_reduced_records_total", buf.reduced_records, ts, type="counter"),
            Metric("vigil_shipper_lag_seconds", max(0.0, lag), ts),
            Metric("vigil_shipper_sent_records_total", self.sent_records, ts, type="counter"),
            Metric("vigil_shipper_retries_total", self.retries, ts, type="counter"),
            Metric(
                "vigil_shipper_dead_letter_batches_total", self.dead_letters, ts, type="counter"
            ),
            Metric("vigil_shipper_auth_failures_total", self.auth_failures, ts, type="counter"),
            Metric("vigil_shipper_failovers_total", self.failovers, ts, type="counter"),
        ]
        if self.last_success is not None:
            out.append(
                Metric("vigil_shipper_last_success_timestamp_seconds", self.last_success, ts)
            )
        return out

    def status(self) -> dict[str, Any]:
        buf = self.buffer
        return {
            "hub": self.hub,
            "hubs": list(self.hubs),
            "stream": buf.stream if buf else None,
            "buffer_bytes": buf.bytes if buf else 0,
            "buffer_records": (buf.pending_records if buf else 0) + len(self.pending),
            "dropped_records": (buf.dropped_records if buf else 0) + self.memory_dropped,
            "reduced_records": buf.reduced_records if buf else 0,
            "write_error": self.write_error,
            "acked_seq": buf.acked if buf else 0,
            "sent_records": self.sent_records,
            "retries": self.retries,
            "dead_letter_batches": self.dead_letters,
            "auth_failures": self.auth_failures,
            "failovers": self.failovers,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "lag_seconds": time.time() - self.oldest_unacked_ts if self.oldest_unacked_ts else 0.0,
        }


def _oldest_ts(records: list[Any]) -> float | None:
    stamps = [r["ts"] for r in records[:1] if isinstance(r, dict) and "ts" in r]
    return float(stamps[0]) if stamps else None
