"""The log collector: a long-running source (`start`/`stop`) that follows
the files of every [[logs]] table, plus `collect()` for its counters.

Loop. A step (in the collector's own worker thread) rescans the globs,
reads what the files added, and runs rules and detectors over it; events
collect in memory. Change notifications (watchfiles) start a step at once;
without them, or if one is lost, the step every `poll_interval` catches up.
Idle files cost a stat each per poll and nothing else.

Commit. Offsets, counters and detector state move in step with the
events: `commit` hands both to agent/core/checkpoint.py, which appends the
events to the disk buffer and makes the new state durable as one step as
far as a crash can tell. Until then nothing read since the last commit
counts, so a kill -9 makes the next start read those lines again, and
they produce the same events and counts once. Commits come at most every
COMMIT_EVERY seconds while events wait, STATE_EVERY while only offsets
moved. A full disk stops reading (not collecting: the data waits in the
files) until a commit succeeds.

`collect()` reports only committed counters, so the exported counters
never run ahead of what a crash would keep.

Watchdog. A task apart from the reader (its stats run in the default
executor, not the reader's thread, so a stuck reader cannot hide its own
stall) looks at every followed file each `poll_interval`: a file that has
grown past what the reader has looked at, or whose read offset is ahead
of its committed one, while neither moved nor the reader processed any
chunk (a long step of matching lines is busy, not stalled) for
`STALL_POLLS` polls (and at least as many STATE_EVERY, the cadence of
offset commits), is a stall: logged once (`log_reader_stalled`), counted in
`log_reader_stalled_total{file}`, and shown in `vigil status` and as the
collector's health until it moves again. A commit that fails is kept with
its events and retried; it too is logged, counted
(`log_commit_errors_total`) and shown, never swallowed.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from agent.core.checkpoint import CheckpointStore
from agent.core.records import Event, Metric, Record, summary
from agent.core.worker import Worker
from collectors.base import Collector, counter, gauge
from collectors.logs.access import QUANTILES, AccessMetrics, compile_format
from collectors.logs.config import JournalConfig, LogDetectorsConfig, LogsConfig
from collectors.logs.detectors.base import DETECTORS, Detector, build_all
from collectors.logs.files import BYTES, COUNTERS, LINES, MISSED, REREAD, TRUNCATED, Follower
from collectors.logs.journal import JournalFollower
from collectors.logs.rules import RateLimiter, TableProcessor

log = structlog.get_logger("vigil.collectors.logs")

STEP_BYTES = 16 << 20  # read at most this much per step before committing
COMMIT_EVERY = 0.25  # seconds between commits while events wait
STATE_EVERY = 1.0  # seconds between commits when only offsets moved
HOLD_CHECK = 0.2  # seconds between looks while a multiline record is held back
LABEL_IDLE = 3600.0  # seconds a file label may have no file before its series are dropped
LABELS_CHECK_EVERY = 60.0  # seconds between looks for such labels
STALL_POLLS = 3  # polls a file may wait, with no progress, before it counts as stalled


# tail state, the detectors' own checkpoint parts (templates), counters view
Parts = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


class Committer(Protocol):
    """What the agent gives the collector: the disk buffer, or local state only."""

    async def load_checkpoint(self, store: CheckpointStore, name: str) -> Any: ...

    async def commit_checkpoint(
        self, store: CheckpointStore, records: list[dict[str, Any]], parts: dict[str, Any]
    ) -> None: ...


def table_key(config: LogsConfig) -> str:
    """A table is known by its paths across restarts and reloads."""
    return "\n".join(config.paths)


class LogCollector(Collector):
    name = "logs"
    blocking = False  # collect() only reads committed numbers from memory
    specs = (
        counter("log_lines_read_total", "Lines read from a log file."),
        counter("log_bytes_read_total", "Bytes of complete lines read from a log file."),
        counter(
            "log_bytes_missed_total",
            "Bytes a rotation or truncation made unreadable before they were read.",
        ),
        counter("log_bytes_reread_total", "Bytes read again after a crash or restart."),
        counter("log_lines_truncated_total", "Lines cut at max_line_bytes."),
        counter("log_matches_total", "Lines a rule matched."),
        counter("log_events_suppressed_total", "Rule matches not sent as events (rate limit)."),
        counter(
            "log_reader_stalled_total",
            "Times a file had data waiting while its read and committed offsets did not move "
            "for three poll intervals.",
        ),
        counter("log_commit_errors_total", "Commits of log state and events that failed."),
        counter("log_line_errors_total", "Lines whose processing raised an error: skipped."),
        gauge("log_files_watched", "Log files open for reading."),
        counter("http_requests_total", "Requests in an access log, by status class."),
        counter("http_request_bytes_total", "Response body bytes in an access log."),
        summary(
            "http_request_duration_seconds",
            "Request durations in an access log over its duration_window, at each quantile.",
        ),
        counter("log_lines_unparsed_total", "Access-log lines its format did not fit: skipped."),
        *(spec for _, detector in DETECTORS.items() for spec in detector.specs),
    )

    def __init__(
        self,
        tables: Sequence[LogsConfig],
        detectors: LogDetectorsConfig,
        state_dir: Path,
        engine: str = "auto",
    ) -> None:
        self.tables = tuple(tables)
        self.detector_config = detectors
        self.store = CheckpointStore(state_dir / "logs")
        self.engine = engine
        self.thread = Worker("logs")
        self.committer: Committer | None = None
        self.followers: list[Follower] = []
        self.processors: list[TableProcessor] = []
        self.counters: dict[str, list[int]] = {}
        self.matches: dict[tuple[str, str], int] = {}
        # access logs: (file, vhost, status class) -> [requests, bytes]; file -> unparsed
        self.requests: dict[tuple[str, str, str], list[Any]] = {}  # [count, bytes as float]
        self.unparsed: dict[str, int] = {}
        self.durations: list[tuple[str, str, Any]] = []  # the latest quantiles (access.py)
        self.limiter = RateLimiter(1)
        self.detectors: dict[str, Detector] = {}
        self.events: list[Event] = []  # produced, not yet committed
        self.committed: dict[str, Any] = {}  # the last committed "tail" part
        self.view: dict[str, Any] = {}  # what collect() reports: counters as committed
        self.parts_committed: dict[str, Any] = {}  # the detectors' own parts, as committed
        self.commit_error: str | None = None
        self.commit_errors = 0
        self.catching_up = False  # the last step left data unread
        self.heartbeat = 0  # chunks processed: the reader's pulse, for the watchdog
        # watchdog: (dev, ino) -> (progress mark, since when unchanged (monotonic), stalled)
        self.progress: dict[tuple[int, int], tuple[tuple[int, int, int], float, bool]] = {}
        self.stalled_total: dict[str, int] = {}
        self.stalled_now: set[str] = set()
        self.last_commit = 0.0
        self._committing: asyncio.Future[None] | None = None
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        # counter series already reported, and when collect() last ran
        self._known: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._reported: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self._since: float | None = None
        # file label -> when a follower last had a file under it (worker thread)
        self.label_seen: dict[str, float] = {}
        self._labels_checked = 0.0
        self.forgotten = False  # labels were dropped since the last commit

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, committer: Committer) -> None:
        self.committer = committer
        tail = await committer.load_checkpoint(self.store, "tail") or {}
        own = {}
        for _, detector in DETECTORS.items():
            if detector.state_part is not None:
                part = detector.state_part
                own[part] = await committer.load_checkpoint(self.store, part)
        for repair in self.store.repairs:
            log.warning("log_state_repaired", what=repair)
        await self.thread.run(self._setup, tail, own, self.store.discarded.get("tail"))
        self.committed, _, self.view = await self.thread.run(self._parts)
        self.parts_committed = own
        # The series restored from the state are not new: no implicit 0 for them.
        self._known, self._since = set(), None
        self.collect(time.time(), 0.0)
        self.tasks = [
            asyncio.create_task(self._loop(), name="logs:tail"),
            asyncio.create_task(self._watchdog(), name="logs:watchdog"),
        ]
        if any(t.watch == "auto" for t in self.tables):
            # imported off the loop: importing reads files (and watchfiles pulls
            # in multiprocessing, which asks the OS for the working directory)
            await self.thread.run(importlib.import_module, "watchfiles")
            self.tasks.append(asyncio.create_task(self._watch(), name="logs:watch"))
        log.info(
            "log_tailing_started",
            files=sum(len(f.files) for f in self.followers),
            engine=self.processors[0].engine if self.processors else None,
        )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        await self._wait_for_commit()
        if self.committer is not None and self.followers:
            # what was read is kept; failing that, it is read again next time
            parts = await self.thread.run(self._parts)
            events, self.events = self.events, []
            await self._commit(parts, events)
        await self.thread.run(self._close)
        self.thread.shutdown(wait=False)

    def _setup(self, tail: dict[str, Any], own: dict[str, Any], discarded: Any) -> None:
        now = time.time()
        self.counters = {k: list(v) for k, v in tail.get("counters", {}).items()}
        self.matches = {(r, f): n for r, f, n in tail.get("matches", [])}
        self.requests = {(f, v, c): [n, b] for f, v, c, n, b in tail.get("requests", [])}
        self.unparsed = dict(tail.get("unparsed", {}))
        states = {
            name: tail.get(name) if d.state_part is None else own.get(d.state_part)
            for name, d in DETECTORS.items()
        }
        self.detectors = build_all(self.detector_config.options, states)
        self.limiter = RateLimiter(min(t.events_per_minute for t in self.tables))
        saved_tables = tail.get("tables", {})
        for table in self.tables:
            saved = saved_tables.get(table_key(table))
            self._count_reread(saved, (discarded or {}).get("tables", {}).get(table_key(table)))
            if isinstance(table, JournalConfig):  # [[journal]]: journalctl, not files
                self.followers.append(JournalFollower(table, saved, self.counters, now))
            else:
                self.followers.append(Follower(table, saved, self.counters, now))
            access = None
            if table.format in ("nginx_combined", "apache_combined", "regex"):
                pattern = compile_format(table.format, table.regex)
                access = AccessMetrics(pattern, table.duration_window, self.requests, self.unparsed)
            self.processors.append(
                TableProcessor(
                    table, self.detectors, self.matches, self.limiter, self.engine, access
                )
            )

    def _count_reread(self, saved: Any, discarded: Any) -> None:
        """A crash lost state that had gone further than the committed one:
        the bytes in between are read again (at least that many)."""
        if not saved or not discarded:
            return
        before = {(f["dev"], f["ino"]): f["offset"] for f in saved["files"]}
        for f in discarded["files"]:
            ahead = f["offset"] - before.get((f["dev"], f["ino"]), f["offset"])
            if ahead > 0:
                self.counters.setdefault(f["path"], [0] * len(COUNTERS))[REREAD] += ahead

    def _close(self) -> None:
        for follower in self.followers:
            follower.close()

    # -- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        poll = min(t.poll_interval for t in self.tables)
        while True:
            if self.commit_error is None:
                # The state is taken at the end of the step, in its thread, so
                # it matches the events exactly; the commit's disk I/O then
                # overlaps the next step's reading.
                try:
                    more, parts = await self.thread.run(self._step, self._commit_due() == 0)
                except Exception as exc:  # a disk error or a bug: keep tailing, say so
                    log.exception("log_step_failed", error=str(exc))
                    await asyncio.sleep(1.0)
                    continue
                if parts is not None:
                    await self._wait_for_commit()
                    events, self.events = self.events, []  # exactly those up to `parts`
                    self._committing = asyncio.ensure_future(self._commit(parts, events))
            else:  # the buffer refused the last commit: read nothing new, retry it
                more = False
                await self._wait_for_commit()
                if self._commit_due() == 0:
                    parts = await self.thread.run(self._parts)
                    events, self.events = self.events, []
                    await self._commit(parts, events)
            if more and self.commit_error is None:
                self.catching_up = True
                await asyncio.sleep(0)
                continue
            if self.catching_up:  # a backlog just read to its end: commit it now
                self.catching_up = False
                for follower in self.followers:
                    follower.urgent = True
            due = 1.0 if self.commit_error is not None else self._commit_due()
            timeout = poll if due is None else min(poll, max(due, 0.01))
            if any(f.holding for f in self.followers):  # a record waits for its timeout
                timeout = min(timeout, HOLD_CHECK)
            waiter = asyncio.ensure_future(self.wake.wait())
            await asyncio.wait([waiter], timeout=timeout)
            waiter.cancel()
            self.wake.clear()

    def _step(self, commit: bool) -> tuple[bool, Parts | None]:
        now = time.time()
        more = False
        for follower, processor in zip(self.followers, self.processors):
            follower.scan(now)
            chunks, left = follower.read(now, STEP_BYTES)
            more = more or left
            for chunk in follower.take_rescued() + chunks:
                processor.process(chunk, now, self.events.append)
                self.heartbeat += 1  # alive: a long step of matching lines is no stall
            follower.recycle(chunks)
        self.events.extend(self.limiter.summaries(now))
        self._take_durations(now)
        if now - self._labels_checked >= LABELS_CHECK_EVERY:
            self._labels_checked = now
            self._forget_idle_labels(now)
        return more, self._parts() if commit else None

    def _forget_idle_labels(self, now: float) -> None:
        """Drop the per-file series of labels no follower has had a file
        under for LABEL_IDLE: files named by date (`app-2026-11-28.log`,
        dateext rotations in the glob) would add series every day for ever.
        A label that comes back starts again from 0, as a counter may."""
        for follower in self.followers:
            for label in follower.labels():
                self.label_seen[label] = now
        labels = {*self.counters, *self.unparsed, *self.stalled_total}
        labels |= {label for _, label in self.matches} | {k[0] for k in self.requests}
        idle = {
            label for label in labels if now - self.label_seen.setdefault(label, now) > LABEL_IDLE
        }
        if not idle:
            return
        for table in (self.counters, self.unparsed, self.stalled_total, self.label_seen):
            for label in idle:
                table.pop(label, None)
        for match in [k for k in self.matches if k[1] in idle]:
            del self.matches[match]
        for request in [k for k in self.requests if k[0] in idle]:
            del self.requests[request]
        for processor in self.processors:
            if processor.access is not None:
                for label in idle:
                    processor.access.vhosts.pop(label, None)
        self.forgotten = True  # a commit is due: the dropped counters leave the state
        log.info("log_file_series_forgotten", files=len(idle), idle_seconds=LABEL_IDLE)

    def _take_durations(self, now: float) -> None:
        """The access logs' quantiles now, for collect() (the sketches are
        this thread's; the list is handed over whole)."""
        durations = []
        for processor in self.processors:
            if processor.access is not None:
                durations += processor.access.quantiles(now, QUANTILES)
        self.durations = durations

    def _commit_due(self) -> float | None:
        """0 when a commit is due now; else seconds until it will be (None: nothing to commit)."""
        if self._committing is not None and not self._committing.done():
            return COMMIT_EVERY  # one at a time; look again soon
        since = time.monotonic() - self.last_commit
        if self.events:
            return max(0.0, COMMIT_EVERY - since)
        if any(f.urgent for f in self.followers):  # a file appeared or rotated
            return 0.0
        if self._moved() or self.forgotten:  # flags read: no need for the thread
            return max(0.0, STATE_EVERY - since)
        return None

    async def _wait_for_commit(self) -> None:
        if self._committing is not None:
            committing, self._committing = self._committing, None
            # _commit keeps and reports its own failures; anything else is a bug to show
            for result in await asyncio.gather(committing, return_exceptions=True):
                if isinstance(result, Exception):
                    log.error("log_commit_crashed", error=repr(result))

    def _moved(self) -> bool:
        return any(f.changed for f in self.followers)

    async def _commit(self, taken: Parts, events: list[Event]) -> None:
        """Commit `taken` (from `_parts`) with the events produced up to it.
        A failure keeps everything for the next try and stops reading."""
        assert self.committer is not None
        tail, own, view = taken
        parts: dict[str, Any] = {"tail": tail}
        for part, data in own.items():
            if data != self.parts_committed.get(part):
                parts[part] = data  # only when it changed: it can be large
        self.last_commit = time.monotonic()
        try:
            await self.committer.commit_checkpoint(self.store, [e.to_dict() for e in events], parts)
        except Exception as exc:  # a full disk, or a bug: keep everything, stop reading, say so
            # in place: the next step may be appending to this very list
            self.events[:0] = events  # try again with everything
            for follower in self.followers:
                follower.changed = True
            self.commit_errors += 1
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
            error = f"cannot commit log state: {reason}"
            if error != self.commit_error:
                log.error("log_commit_failed", error=error, waiting_events=len(self.events))
            self.commit_error = error
            return
        except BaseException:
            self.events[:0] = events
            raise
        if self.commit_error is not None:
            log.info("log_commit_resumed")
        self.commit_error = None
        self.committed, self.parts_committed, self.view = tail, own, view

    def _parts(self) -> Parts:
        """The state to commit, and the counters it commits, taken together."""
        view = {
            "counters": {k: tuple(v) for k, v in self.counters.items()},
            "matches": dict(self.matches),
            "requests": {k: tuple(v) for k, v in self.requests.items()},
            "unparsed": dict(self.unparsed),
            "detectors": [s for d in self.detectors.values() for s in d.samples()],
        }
        for follower in self.followers:
            follower.changed = follower.urgent = False
        self.forgotten = False
        own = {
            d.state_part: d.snapshot() for d in self.detectors.values() if d.state_part is not None
        }
        return self._tail_part(), own, view

    def _tail_part(self) -> dict[str, Any]:
        tail = {
            "tables": {table_key(f.config): f.state() for f in self.followers},
            "counters": {k: list(v) for k, v in self.counters.items()},
            "matches": [[r, f, n] for (r, f), n in sorted(self.matches.items())],
            "requests": [[*k, *v] for k, v in sorted(self.requests.items())],
            "unparsed": dict(self.unparsed),
        }
        for name, detector in self.detectors.items():
            if detector.state_part is None:
                tail[name] = detector.snapshot()
        return tail

    # -- the watchdog -------------------------------------------------------------------

    async def _watchdog(self) -> None:
        poll = min(t.poll_interval for t in self.tables)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(poll)
            try:
                # the default executor: the reader's own thread may be the one stuck
                sizes = await loop.run_in_executor(None, self._sizes)
                # commits of offsets alone come every STATE_EVERY: no stall before a few
                self._check_progress(sizes, time.monotonic(), STALL_POLLS * max(poll, STATE_EVERY))
            except Exception as exc:  # never let the watchdog die silently
                log.exception("log_watchdog_failed", error=str(exc))

    def _sizes(self) -> list[tuple[tuple[int, int], str, int, int, int]]:
        """(key, label, size, looked at up to, read offset) of each followed file
        still at its path. Reads the reader's objects from another thread:
        plain attribute reads, and a stale one only delays a verdict a poll."""
        out = []
        for follower in self.followers:
            for f in list(follower.files.values()):
                if f.rotated:
                    continue  # no growth expected; closed after rotate_wait
                try:
                    st = os.stat(f.path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == f.key:
                    out.append((f.key, f.path, st.st_size, f.seen[0], f.offset))
        return out

    def _check_progress(
        self, sizes: list[tuple[tuple[int, int], str, int, int, int]], now: float, limit: float
    ) -> None:
        committed = {
            (f["dev"], f["ino"]): f["offset"]
            for table in self.committed.get("tables", {}).values()
            for f in table["files"]
        }
        progress: dict[tuple[int, int], tuple[tuple[int, int, int], float, bool]] = {}
        stalled_now = set()
        for key, label, size, looked, offset in sizes:
            done = committed.get(key, 0)
            mark = (looked, done, self.heartbeat)
            waiting = size > looked or offset > done
            before, since, stalled = self.progress.get(key, (mark, now, False))
            if mark != before or not waiting:
                if stalled:
                    log.info("log_reader_resumed", file=label, offset=done)
                since, stalled = now, False
            elif not stalled and now - since >= limit:
                stalled = True
                self.stalled_total[label] = self.stalled_total.get(label, 0) + 1
                log.warning(
                    "log_reader_stalled",
                    file=label,
                    size=size,
                    looked_at=looked,
                    read_offset=offset,
                    committed_offset=done,
                    seconds=round(now - since, 1),
                    commit_error=self.commit_error,
                )
            if stalled:
                stalled_now.add(label)
            progress[key] = (mark, since, stalled)
        self.progress, self.stalled_now = progress, stalled_now

    def problem(self) -> str | None:
        """What is wrong now, for the collector's health in `vigil status`."""
        if self.commit_error is not None:
            return self.commit_error
        if self.stalled_now:
            return f"reader stalled on {', '.join(sorted(self.stalled_now))}"
        return None

    # -- change notifications -----------------------------------------------------------

    async def _watch(self) -> None:
        """Wake the loop on changes in the watched directories; restart the
        watcher when the set of directories changes. Polling goes on regardless."""
        import watchfiles

        while True:
            dirs = self._directories()
            if not dirs:
                await asyncio.sleep(min(t.poll_interval for t in self.tables))
                continue
            try:
                async for changes in watchfiles.awatch(
                    *sorted(dirs),
                    watch_filter=None,
                    debounce=50,
                    step=50,
                    recursive=any("**" in p for t in self.tables for p in t.paths),
                    ignore_permission_denied=True,
                    rust_timeout=5000,
                    yield_on_timeout=True,
                ):
                    if changes:  # empty: the periodic timeout, to notice new directories
                        self.wake.set()
                    if self._directories() != dirs:
                        break
            except (OSError, RuntimeError) as exc:
                log.warning("log_watch_unavailable_polling", error=str(exc))
                await asyncio.sleep(60)

    def _directories(self) -> frozenset[str]:
        return frozenset(
            d for f in self.followers if f.config.watch == "auto" for d in f.directories
        )

    def status(self) -> dict[str, Any]:
        """For `vigil status`: the committed position of every file."""
        files = [
            {
                "path": f["path"],
                "offset": f["offset"],
                "size": f["size_seen"],
                "rotated": f["rotated"],
            }
            for table in self.committed.get("tables", {}).values()
            for f in table["files"]
        ]
        journals = [  # [[journal]] tables: the committed cursor
            {"table": key, "cursor": table.get("cursor")}
            for key, table in self.committed.get("tables", {}).items()
            if "cursor" in table
        ]
        return {
            "journals": journals,
            "engine": self.processors[0].engine if self.processors else None,
            "files": files,
            "events_waiting": len(self.events),
            "commit_error": self.commit_error,
            "commit_errors": self.commit_errors,
            "stalled": sorted(self.stalled_now),
        }

    # -- metrics ---------------------------------------------------------------------

    def _counter(
        self, out: list[Record], name: str, value: float, ts: float, **labels: str
    ) -> None:
        """A counter sample; a series seen for the first time gets a 0 at the
        previous collection first (it did not exist, so nothing had been
        counted), so increase() and rate() see its first matches."""
        key = (name, tuple(sorted(labels.items())))
        if key not in self._reported and key not in self._known and self._since is not None:
            out.append(Metric(name, 0, self._since, labels, "counter"))
        self._known.add(key)
        out.append(Metric(name, value, ts, labels, "counter"))

    def collect(self, ts: float, mono: float) -> list[Record]:
        view = self.view
        out: list[Record] = []
        # what this collection reports: a forgotten series leaves the set
        self._reported, self._known = self._known, set()
        names = (
            ("log_lines_read_total", LINES),
            ("log_bytes_read_total", BYTES),
            ("log_bytes_missed_total", MISSED),
            ("log_bytes_reread_total", REREAD),
            ("log_lines_truncated_total", TRUNCATED),
        )
        for label, values in view.get("counters", {}).items():
            for name, i in names:
                self._counter(out, name, values[i], ts, file=label)
        for (rule, label), n in view.get("matches", {}).items():
            self._counter(out, "log_matches_total", n, ts, rule=rule, file=label)
        self._requests(out, view, ts)
        for name, labels, value in view.get("detectors", ()):
            self._counter(out, name, value, ts, **labels)
        for rule, n in self.limiter.suppressed_total.items():
            self._counter(out, "log_events_suppressed_total", n, ts, rule=rule)
        for label, n in self.stalled_total.items():
            self._counter(out, "log_reader_stalled_total", n, ts, file=label)
        out.append(Metric("log_commit_errors_total", self.commit_errors, ts, type="counter"))
        line_errors = sum(p.line_errors for p in self.processors)
        out.append(Metric("log_line_errors_total", line_errors, ts, type="counter"))
        watched = sum(len(f.files) for f in self.followers)
        out.append(Metric("log_files_watched", watched, ts))
        self._since = ts
        return out

    def _requests(self, out: list[Record], view: dict[str, Any], ts: float) -> None:
        """The access logs' figures: counters as committed, quantiles as last taken."""
        sent: dict[tuple[str, str], int] = {}
        for (label, vhost, status_class), (n, size) in view.get("requests", {}).items():
            host = {"vhost": vhost} if vhost else {}
            self._counter(
                out, "http_requests_total", n, ts, file=label, status_class=status_class, **host
            )
            sent[(label, vhost)] = sent.get((label, vhost), 0) + size
        for (label, vhost), size in sent.items():
            host = {"vhost": vhost} if vhost else {}
            self._counter(out, "http_request_bytes_total", size, ts, file=label, **host)
        for label, n in view.get("unparsed", {}).items():
            self._counter(out, "log_lines_unparsed_total", n, ts, file=label)
        for label, vhost, quantiles in self.durations:
            host = {"vhost": vhost} if vhost else {}
            for q, seconds in quantiles.items():
                labels = {"file": label, **host, "quantile": f"{q:g}"}
                out.append(Metric("http_request_duration_seconds", seconds, ts, labels))
