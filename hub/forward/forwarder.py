"""One `[[hub.forward]]`: a task that sends on what the store has committed.

It never runs inside ingest. It reads through its own read connection (on
its own thread), walking each stream's batches (the `batches` table: the
rows a batch stored, written in the batch's transaction) in the order of
the stream's marks, from its cursor on. A send holds up to
`max_samples_per_send` samples of one or more streams (a big batch is
split: the cursor then holds the last row sent). Only once the receiver
answered 2xx (or refused the send for good) do the cursors of the streams
it covered move, in one store transaction (`Store.forward_commit`). So:

- a slow or dead receiver delays no agent: ingest never waits for it;
- a restart, even SIGKILL, loses nothing and repeats at most the send that
  was in flight (at least once: its 2xx may have been lost with the hub);
- 5xx and network errors are retried with full-jitter backoff up to
  `max_backoff`; 429 after its Retry-After; other statuses (4xx, 3xx) are
  dropped and counted by status class, and the cursor moves past them;
- rows that retention deleted before they were sent count as dropped,
  reason "expired"; samples whose names Prometheus refuses (see
  remote_write.py) as "invalid".

Several hubs on one PostgreSQL store run each forward on one hub at a
time: each send is read only while this hub holds the forward's lock
(`Store.lead("forward:NAME")`, a session-level advisory lock; a SQLite
store always leads). The hubs share the durable cursors, so the hub that
takes a forward over (the leader died, or lost its database session)
reads them first and goes on from there: it repeats at most the send in
flight when the leader went (its 2xx, or its cursor commit, lost with
it). A cursor only ever moves on (PostgreSQL's `_forward_cursors`): a
late commit of a hub that lost the lock cannot take back a newer one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import time
from typing import Any, NamedTuple

import structlog

from agent.core.retry import full_jitter, retry_after
from agent.core.worker import Worker
from hub.config import ForwardConfig
from hub.forward import remote_write
from hub.store import Reader, Store, Unwritable

log = structlog.get_logger()

POLL = 0.5  # seconds between looks at the store when caught up
BATCHES_PER_LOOK = 64  # one stream's batches read at a time
SERIES_CACHE = 50_000  # label sets and hosts whose encoding is kept (bounded: the RSS)
MAX_RETRY_AFTER = 3600.0
LOG_EVERY = 60.0  # a repeating failure is logged at most this often

Cursor = tuple[int, int]  # (the stream's mark fully sent, rowid sent of the next batch)
Key = tuple[str, str]  # (host, stream)


class Send(NamedTuple):
    body: bytes  # compressed WriteRequest
    samples: int  # in it
    moved: dict[Key, Cursor]  # the cursors once it is delivered
    dropped: dict[str, int]  # rows not in it: reason -> count
    since: float  # when the oldest batch it holds was committed


class Forwarder:
    def __init__(
        self,
        config: ForwardConfig,
        store: Store,
        store_thread: Worker,
        rng: random.Random | None = None,
    ) -> None:
        self.config, self.name = config, config.name
        self.store, self.store_thread = store, store_thread
        self.rng = rng or random.Random()
        self.sent = 0
        self.retries = 0
        self.dropped: dict[str, int] = {}
        self.cursors: dict[Key, Cursor] = {}  # delivered (and committed)
        self.ahead: dict[Key, Cursor] = {}  # read into a send, delivered or not
        self.idle: dict[Key, int] = {}  # the mark up to which a stream had no batch to send
        self.oldest: dict[Key, float] = {}  # each stream's first batch not read yet: committed at
        self.unsent: list[float] = []  # the sends read but not delivered: their `since`
        self.labels = remote_write.Labels(config.extra_labels, SERIES_CACHE)
        self.queue: list[Key] = []  # this round's streams still to read, the next last
        self.marks: dict[Key, int] = {}  # their marks when the round began
        self.thread = Worker(f"forward-{self.name}")
        self.reader: Reader | None = None
        self.session: Any = None
        self.headers: dict[str, str] = {}
        self.logged: dict[str, tuple[float, int]] = {}  # event -> (when logged, suppressed since)
        self.job = f"forward:{self.name}"  # its lock on a shared store (Store.lead)
        self.leading = False  # this hub sends it now

    def lag(self, now: float) -> float:
        """Seconds since the oldest committed batch not yet delivered was
        committed: of those in sends under way, and of those not read yet."""
        oldest = min([*self.oldest.values(), *self.unsent], default=now)
        return max(0.0, now - oldest)

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        """Forward until cancelled; a failure nobody foresaw is logged and
        the forwarder starts again from its durable cursors."""
        while True:
            try:
                await self._run()
            except Exception:  # a bug: say so, keep forwarding
                log.exception("forward_failed", forward=self.name)
                self.thread = Worker(f"forward-{self.name}")
                self.reader = self.session = None
                self.queue, self.marks, self.unsent, self.oldest = [], {}, [], {}
                self.leading = False
                await asyncio.sleep(self.config.max_backoff)

    async def _run(self) -> None:
        try:
            await self._open()
            self.ahead = dict(self.cursors)
            look = asyncio.ensure_future(self.thread.run(self.collect))
            while True:
                try:
                    send = await look
                except Exception as exc:  # a read failed: try again, say so
                    self._warn("forward_read_failed", error=repr(exc)[:300])
                    await asyncio.sleep(self.config.max_backoff)
                    look = asyncio.ensure_future(self.thread.run(self.collect))
                    continue
                if send is None:
                    await asyncio.sleep(POLL)
                    look = asyncio.ensure_future(self.thread.run(self.collect))
                    continue
                self.unsent.append(send.since)
                # the next send is read and encoded while this one travels:
                # it starts where this one ends (`ahead`), and goes only after it
                look = asyncio.ensure_future(self.thread.run(self.collect))
                if send.samples:
                    await self._deliver(send.body, send.samples)
                for reason, n in send.dropped.items():
                    self.dropped[reason] = self.dropped.get(reason, 0) + n
                await self._commit(send.moved)
                self.unsent.remove(send.since)
        finally:
            if self.session is not None:
                await self.session.close()
            if self.reader is not None:
                with contextlib.suppress(Exception):
                    await self.thread.run(self.reader.close)
            self.thread.shutdown(wait=False)

    async def _open(self) -> None:
        """The receiver's session and headers, and where each stream was left."""
        from agent.core.http import client_session, tls_context_async

        config = self.config
        while True:
            try:
                headers = {**remote_write.CONTENT_HEADERS, **config.headers}
                headers.update(await asyncio.to_thread(auth_header, config))
                tls: Any = True
                if config.url.startswith("https:"):
                    ca = str(config.ca_file) if config.ca_file else ""
                    tls = await tls_context_async(config.verify_tls, ca)
                self.reader = await self.thread.run(self.store.reader)
                self.cursors = await self.thread.run(self.reader.forward_cursors, self.name)
                break
            except Exception as exc:  # a file gone since the config was checked, a bad CA
                self._warn("forward_start_failed", error=repr(exc)[:300])
                await asyncio.sleep(config.max_backoff)
        self.headers = headers
        self.session = client_session(timeout=config.timeout, limit=1, tls=tls, headers=headers)
        log.info("forward_started", forward=self.name, url=config.url, streams=len(self.cursors))

    async def _deliver(self, body: bytes, samples: int) -> None:
        """Send until the receiver takes it (2xx) or refuses it for good."""
        import aiohttp

        attempt = 0
        while True:
            status, why, wait = None, "", None
            try:
                async with self.session.post(
                    self.config.url, data=body, headers=self.headers, allow_redirects=False
                ) as resp:
                    status = resp.status
                    if not 200 <= status < 300:
                        why = (await resp.text(errors="replace"))[:300]
                        wait = retry_after(resp.headers.get("Retry-After"))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                why = repr(exc)[:300]
            if status is not None and 200 <= status < 300:
                self.sent += samples
                return
            if status is not None and status != 429 and not 500 <= status < 600:
                reason = f"{status // 100}xx"
                self.dropped[reason] = self.dropped.get(reason, 0) + samples
                self._warn("forward_refused", status=status, samples=samples, answer=why)
                return
            attempt += 1
            self.retries += 1
            if status == 429 and wait is not None:
                delay = min(wait, MAX_RETRY_AFTER)
            else:
                delay = full_jitter(attempt, self.config.max_backoff, self.rng)
            self._warn("forward_retrying", status=status, error=why, attempt=attempt, wait=delay)
            await asyncio.sleep(delay)

    async def _commit(self, moved: dict[Key, Cursor]) -> None:
        """The cursors, durably; retried while the store cannot write."""
        attempt = 0
        while True:
            try:
                await self.store_thread.run(self.store.forward_commit, self.name, moved)
                break
            except Unwritable as exc:
                attempt += 1
                self._warn("forward_cursor_unwritable", error=str(exc)[:300])
                await asyncio.sleep(full_jitter(attempt, self.config.max_backoff, self.rng))
        self.cursors.update(moved)

    def _warn(self, event: str, **fields: Any) -> None:
        """Log `event`, at most once per LOG_EVERY; how many were not logged."""
        now = time.monotonic()
        last, suppressed = self.logged.get(event, (-LOG_EVERY, 0))
        if now - last < LOG_EVERY:
            self.logged[event] = (last, suppressed + 1)
            return
        log.warning(event, forward=self.name, suppressed=suppressed, **fields)
        self.logged[event] = (now, 0)

    # -- what to send (on the forwarder's thread) -------------------------------

    def collect(self) -> Send | None:
        """The next send, from the streams with batches after their cursor
        (`ahead`: where the send before this one ends); None when every
        stream is caught up. Streams are taken in rounds: the pending ones
        are listed once (`_scan`), and each send goes on down the list, a
        stream's batches read up to its mark, until the list is done."""
        reader = self.reader
        assert reader is not None
        if not self._lead():
            return None
        if not self.queue and not self._scan():
            return None
        room = self.config.max_samples_per_send
        series: dict[tuple[str, str, str], list[bytes]] = {}
        moved: dict[Key, Cursor] = {}
        dropped = {"expired": 0, "invalid": 0}
        samples = 0
        labels_of, encode_sample, invalid = self.labels.get, remote_write.encode_sample, 0
        since = math.inf
        while self.queue and room > 0:
            key = self.queue[-1]
            host, stream = key
            seq, row = self.ahead.get(key, (0, 0))
            spans = reader.batches_after(host, stream, seq, BATCHES_PER_LOOK)
            if not spans:  # done, or batches of events only
                self.queue.pop()
                self.idle[key] = self.marks.pop(key, seq)
                self.oldest.pop(key, None)
                continue
            self.oldest[key] = spans[0].received
            since = min(since, spans[0].received)
            for span in spans:
                first = max(span.lo, row + 1)
                rows = reader.batch_rows(first, span.hi, room)
                for _, name, labels, ts, value, _kind in rows:
                    encoded = labels_of(host, name, labels)
                    ms = _millis(ts)
                    if encoded is None or ms is None:
                        invalid += 1
                        continue
                    sample = encode_sample(value, ms)
                    try:
                        series[(host, name, labels)].append(sample)
                    except KeyError:
                        series[(host, name, labels)] = [encoded, sample]
                if len(rows) == room and rows[-1][0] < span.hi:  # the send is full
                    dropped["expired"] += rows[-1][0] - first + 1 - len(rows)
                    room = 0
                    moved[key] = self.ahead[key] = (seq, rows[-1][0])
                    break
                dropped["expired"] += max(0, span.hi - first + 1 - len(rows))
                room -= len(rows)
                seq, row = span.seq, 0
                moved[key] = self.ahead[key] = (seq, row)
                if room <= 0:
                    break
        dropped["invalid"] = invalid
        samples = sum(len(parts) - 1 for parts in series.values())
        if not moved:  # the pending streams had batches of events only
            return None
        body = remote_write.write_request((parts[0], parts[1:]) for parts in series.values())
        return Send(
            remote_write.compress(body) if samples else b"",
            samples,
            moved,
            {k: n for k, n in dropped.items() if n},
            since,
        )

    def _lead(self) -> bool:
        """Whether this hub sends the forward now (asked before every send:
        one hub of those sharing a store does). On taking it, the cursors
        as committed (by whichever hub sent before); on losing it, nothing
        read ahead is kept. Never while a send of ours is in flight: a
        collect that returns None is awaited before the next one starts."""
        assert self.reader is not None
        if not self.store.lead(self.job):
            if self.leading:
                log.warning("forward_standby", forward=self.name)
            self.leading = False
            self.queue, self.marks, self.oldest, self.idle = [], {}, {}, {}
            return False
        if not self.leading:
            self.cursors = self.reader.forward_cursors(self.name)
            self.ahead = dict(self.cursors)
            self.queue, self.marks, self.oldest, self.idle = [], {}, {}, {}
            self.leading = True
            log.info("forward_leading", forward=self.name, streams=len(self.cursors))
        return True

    def _scan(self) -> bool:
        """List the streams with batches after their cursor (the next
        round); False if there are none."""
        assert self.reader is not None
        pending = []
        self.marks = {}
        for host, stream, mark in self.reader.stream_marks():
            key = (host, stream)
            if mark > self.ahead.get(key, (0, 0))[0] and mark > self.idle.get(key, 0):
                pending.append(key)
                self.marks[key] = mark
        for key in set(self.oldest) - set(pending):
            del self.oldest[key]
        self.queue = sorted(pending, reverse=True)  # taken from the end
        return bool(pending)


def _millis(ts: float) -> int | None:
    """Seconds as int64 milliseconds; None beyond int64 (or not a number)."""
    try:
        ms = round(ts * 1000)
    except (OverflowError, ValueError):
        return None
    return ms if -(2**63) <= ms < 2**63 else None


def auth_header(config: ForwardConfig) -> dict[str, str]:
    """Authorization from basic_auth or bearer_token_file (read now: OSError)."""
    if config.basic_auth is not None and config.basic_auth.password_file is not None:
        password = config.basic_auth.password_file.read_text().strip()
        raw = f"{config.basic_auth.username}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if config.bearer_token_file is not None:
        return {"Authorization": "Bearer " + config.bearer_token_file.read_text().strip()}
    return {}
