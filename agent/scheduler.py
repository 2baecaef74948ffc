"""Runs each collector on its own supervised schedule.

One asyncio task per collector. The first run is immediate; later runs
sit on a grid of the interval on the event loop's monotonic clock (a
wall-clock jump neither stalls nor bursts collection), shifted by a phase
the agent draws at random once per interval, so a fleet started together
does not collect in lockstep while collectors sharing an interval still
wake the process together. An optional jitter delays each run further. A
run never overlaps the previous one: a run that ends past its next slot
skips the missed slots and counts them as overruns, instead of catching up
in a burst.

Blocking collectors run in a worker thread, bounded by a timeout. Python
cannot kill a thread, so a run that times out is abandoned: its thread
may still be stuck (a dead NFS mount in statvfs, say), and until it
returns the collector's slots are skipped and counted as overruns, never
stacked up in more threads. A run that raises or times out is logged and
counted, and the collector is retried with exponential backoff (capped),
so a broken collector neither takes the daemon down nor spins.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, cast

import structlog

from agent.core.records import Record
from collectors.base import Collector

log = structlog.get_logger()

MAX_BACKOFF = 300.0  # seconds; never longer than this between retries (or one interval)

Sink = Callable[[str, Sequence[Record]], None]


@dataclass
class CollectorStats:
    """What the self-metrics and /status report per collector. Kept across
    reloads so its counters never go backwards while the agent runs."""

    runs: int = 0
    errors: int = 0
    timeouts: int = 0
    overruns: int = 0
    samples: int = 0
    last_duration: float | None = None
    last_run: float | None = None  # wall clock
    last_success: float | None = None  # wall clock
    last_error: str | None = None
    failures_in_a_row: int = 0


class Schedule:
    """One collector's loop. Start it with `asyncio.create_task(schedule.run())`."""

    def __init__(
        self,
        collector: Collector,
        interval: float,
        timeout: float,
        jitter: float,
        sink: Sink,
        stats: CollectorStats,
        executor: Executor | None = None,
        rng: random.Random | None = None,
        phase: float = 0.0,
        first_at_phase: bool = False,
    ) -> None:
        self.collector = collector
        self.name = collector.name
        self.interval = interval
        self.timeout = timeout
        self.jitter = jitter
        self.phase = phase  # where on the interval grid runs sit, after the first
        # The first run waits for its phase too: hundreds of checks started
        # together must not all probe at once.
        self.first_at_phase = first_at_phase
        self.sink = sink
        self.stats = stats
        self.executor = executor
        self.rng = rng or random.Random()
        self._abandoned: asyncio.Future[Any] | None = None
        self.first_attempt = asyncio.Event()

    @property
    def stuck(self) -> bool:
        """A timed-out run whose thread has not returned yet."""
        return self._abandoned is not None and not self._abandoned.done()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.collector.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        slot = loop.time()
        first_slot = True
        if self.first_at_phase:
            slot += self.phase
            first_slot = False
        while True:
            delay = slot + self.rng.uniform(0.0, self.jitter) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stuck:
                self.stats.overruns += 1
                log.warning("collector_still_running", collector=self.name)
            else:
                try:
                    await self.run_once()
                except Exception as exc:  # the sink or logging failed: keep going
                    self.stats.errors += 1
                    self._failed(f"{type(exc).__name__}: {exc}")
            self.first_attempt.set()
            if first_slot:
                slot += self.phase
                first_slot = False
            slot += self.interval * self._backoff_factor()
            now = loop.time()
            if slot <= now:  # past the next slot already: skip, never burst
                missed = int((now - slot) // self.interval) + 1
                self.stats.overruns += missed
                slot += missed * self.interval

    def _backoff_factor(self) -> float:
        failures = self.stats.failures_in_a_row
        if failures <= 1:
            return 1.0
        cap = max(1.0, MAX_BACKOFF / self.interval)
        return float(min(2 ** (failures - 1), cap))

    async def run_once(self) -> None:
        stats = self.stats
        ts, mono = time.time(), time.monotonic()
        stats.runs += 1
        stats.last_run = ts
        try:
            records = await self._call(ts, mono)
        except asyncio.TimeoutError:
            stats.timeouts += 1
            self._failed(f"timed out after {self.timeout:g}s")
            log.warning("collector_timeout", collector=self.name, timeout=self.timeout)
        except Exception as exc:
            stats.errors += 1
            self._failed(f"{type(exc).__name__}: {exc}")
            log.error(
                "collector_error",
                collector=self.name,
                error=stats.last_error,
                failures_in_a_row=stats.failures_in_a_row,
                exc_info=exc,
            )
        else:
            if stats.failures_in_a_row:
                log.info("collector_recovered", collector=self.name)
            stats.failures_in_a_row = 0
            stats.last_success = ts
            stats.samples = len(records)
            self.sink(self.name, records)
        finally:
            # time.monotonic, not loop.time: uvloop's clock has millisecond steps
            stats.last_duration = time.monotonic() - mono

    def _failed(self, error: str) -> None:
        self.stats.failures_in_a_row += 1
        self.stats.last_error = error

    async def _call(self, ts: float, mono: float) -> Sequence[Record]:
        # asyncio.wait, not wait_for: before Python 3.12, wait_for can swallow
        # a cancellation that races with the result, and a stop would hang.
        if self.collector.runs_inline():
            result = self.collector.collect(ts, mono)
            if not inspect.isawaitable(result):
                return result
            task = asyncio.ensure_future(result)
            try:
                done, _ = await asyncio.wait({task}, timeout=self.timeout)
            finally:
                if not task.done():  # timed out, or we are being cancelled
                    task.cancel()
            if not done:
                raise asyncio.TimeoutError
            return task.result()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self.collector.collect, ts, mono)
        finished, _ = await asyncio.wait({future}, timeout=self.timeout)
        if not finished:
            # Keep the future, to know when the thread is free again.
            self._abandoned = future
            future.add_done_callback(self._late_return)
            raise asyncio.TimeoutError
        return cast("Sequence[Record]", future.result())  # a blocking collect returns records

    def _late_return(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved, so asyncio does not warn about it
        log.info("collector_returned_after_timeout", collector=self.name)
