"""The log collector's loop in-process (collectors/logs/tailer.py): commits
carry the events with the state, and a failing step does not stop tailing."""

from __future__ import annotations

import asyncio
import threading
import time

from agent.core.checkpoint import CheckpointStore
from collectors.logs.config import LogDetectorsConfig, LogsConfig, RuleConfig
from collectors.logs.tailer import LogCollector


class Committer:
    """Keeps what the tailer commits, as the agent's buffer would."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    async def load_checkpoint(self, store: CheckpointStore, name: str):
        return await asyncio.to_thread(store.load, name, None)

    async def commit_checkpoint(self, store, records, parts) -> None:
        await asyncio.to_thread(store.commit, None, [], parts)
        self.records += records


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def collector(tmp_path, log, **options) -> LogCollector:
    options = {
        "paths": (str(log),),
        "start_at": "beginning",
        "default_rules": False,
        "detectors": (),
        "poll_interval": 0.05,
        "rules": (RuleConfig(name="boom", pattern="boom"),),
        **options,
    }
    return LogCollector([LogsConfig(**options)], LogDetectorsConfig(), tmp_path / "state")


def test_a_failing_step_is_logged_and_tailing_goes_on(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("boom 1\n")
    logs = collector(tmp_path, log)
    sink = Committer()

    async def scenario():
        await logs.start(sink)
        follower = logs.followers[0]
        real_read, failures = follower.read, []

        def flaky(now, budget):
            if not failures:
                failures.append(now)
                raise OSError(5, "Input/output error")
            return real_read(now, budget)

        follower.read = flaky
        await wait_until(lambda: len(sink.records) == 1)
        with open(log, "a") as fh:
            fh.write("boom 2\n")
        await wait_until(lambda: len(sink.records) == 2)
        await logs.stop()
        return failures

    failures = run(scenario())
    assert failures, "the step never failed: the test did not test anything"
    assert [r["fields"]["line"] for r in sink.records] == ["boom 1", "boom 2"]


def test_the_committed_counters_restart_where_they_were(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("boom\nfine\nboom\n")
    sink = Committer()

    async def first():
        logs = collector(tmp_path, log)
        await logs.start(sink)
        await wait_until(lambda: logs.view.get("matches"))
        await logs.stop()

    async def second():
        logs = collector(tmp_path, log)
        await logs.start(sink)
        with open(log, "a") as fh:
            fh.write("boom\n")
        await wait_until(lambda: sum(logs.view.get("matches", {}).values()) == 3)
        metrics = {
            (m.name, tuple(sorted(m.labels.items()))): m.value for m in logs.collect(0.0, 0.0)
        }
        await logs.stop()
        return metrics

    run(first())
    metrics = run(second())
    assert metrics[("log_matches_total", (("file", str(log)), ("rule", "boom")))] == 3
    assert metrics[("log_lines_read_total", (("file", str(log)),))] == 4
    assert len(sink.records) == 3  # each matching line once, across the restart


def test_a_stalled_reader_is_logged_counted_and_shown(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("boom 1\n")
    logs = collector(tmp_path, log)
    sink = Committer()
    release = threading.Event()

    def stalled_count():
        return {
            m.labels.get("file"): m.value
            for m in logs.collect(0.0, 0.0)
            if m.name == "log_reader_stalled_total"
        }

    async def scenario():
        await logs.start(sink)
        await wait_until(lambda: len(sink.records) == 1)
        follower = logs.followers[0]
        real_read = follower.read

        def stuck(now, budget):
            release.wait(30)  # the reader's thread hangs, as on a dead NFS mount
            return real_read(now, budget)

        follower.read = stuck
        with open(log, "a") as fh:
            fh.write("boom 2\n")
        await wait_until(lambda: stalled_count().get(str(log)) == 1)
        problem = logs.problem()
        shown = logs.status()["stalled"]
        release.set()
        await wait_until(lambda: len(sink.records) == 2)
        await wait_until(lambda: logs.problem() is None)
        counted = stalled_count()
        await logs.stop()
        return problem, shown, counted

    problem, shown, counted = run(scenario())
    assert problem == f"reader stalled on {log}"
    assert shown == [str(log)]
    assert counted == {str(log): 1}  # once per stall, not once per poll


def test_a_commit_that_keeps_failing_is_counted_shown_and_then_delivers_everything(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("boom 1\n")
    logs = collector(tmp_path, log)

    class Refusing(Committer):
        failures = 0

        async def commit_checkpoint(self, store, records, parts) -> None:
            if records and self.failures < 3:
                self.failures += 1
                raise ValueError("cannot encode that")  # not an OSError: a bug, say
            await super().commit_checkpoint(store, records, parts)

    sink = Refusing()

    async def scenario():
        await logs.start(sink)
        await wait_until(lambda: logs.commit_errors >= 1)
        problem = logs.problem()
        with open(log, "a") as fh:
            fh.write("boom 2\n")
        await wait_until(lambda: len(sink.records) == 2, timeout=15)
        errors = [m.value for m in logs.collect(0.0, 0.0) if m.name == "log_commit_errors_total"]
        healthy = logs.problem()
        await logs.stop()
        return problem, errors, healthy

    problem, errors, healthy = run(scenario())
    assert problem is not None and "cannot encode that" in problem
    assert errors == [3] and healthy is None
    assert [r["fields"]["line"] for r in sink.records] == ["boom 1", "boom 2"]


def test_a_commit_that_fails_while_the_next_step_reads_loses_no_event(tmp_path):
    """The failed commit's events go back in front of the list the reader is
    appending to at that moment, not into a copy of it."""
    log = tmp_path / "app.log"

    def append(first: int, n: int) -> None:
        with open(log, "a") as fh:
            fh.write("".join(f"boom {i:08d} " + "x" * 180 + "\n" for i in range(first, first + n)))

    append(0, 60_000)
    logs = collector(tmp_path, log, events_per_minute=10_000_000)

    class FailingMidStep(Committer):
        calls = 0

        async def commit_checkpoint(self, store, records, parts) -> None:
            self.calls += 1
            if self.calls == 1 and records:  # fail while the next step is half way through
                await asyncio.to_thread(append, 60_000, 100_000)
                logs.wake.set()
                beat = logs.heartbeat
                while logs.heartbeat == beat:
                    await asyncio.sleep(0.001)
                raise OSError(28, "No space left on device")
            await super().commit_checkpoint(store, records, parts)

    sink = FailingMidStep()

    async def scenario():
        await logs.start(sink)
        await wait_until(lambda: len(sink.records) >= 160_000, timeout=60)
        await logs.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))
    lines = [r["fields"]["line"] for r in sink.records]
    assert sink.calls > 2 and len(lines) == len(set(lines)) == 160_000


def test_a_long_step_of_matching_lines_is_busy_not_stalled(tmp_path, monkeypatch):
    for i in range(8):
        (tmp_path / f"app{i}.log").write_text("")
    logs = collector(tmp_path, tmp_path / "*.log")
    sink = Committer()

    async def scenario():
        await logs.start(sink)
        processor = logs.processors[0]
        real = processor.process

        def slow(chunk, now, emit):
            time.sleep(0.6)  # a chunk full of matching lines: 8 of them take 4.8 s
            real(chunk, now, emit)

        monkeypatch.setattr(processor, "process", slow)
        for i in range(8):
            with open(tmp_path / f"app{i}.log", "a") as fh:
                fh.write("boom\n")
        await wait_until(lambda: len(sink.records) == 8, timeout=30)
        stalled = dict(logs.stalled_total)
        await logs.stop()
        return stalled

    assert run(scenario()) == {}  # the limit is 3 s; the reader made progress all along


def test_the_series_of_files_gone_for_an_hour_are_dropped(tmp_path, monkeypatch):
    """Files named by date (app-2026-11-28.log) would add per-file series
    every day for ever: a label no file has had for LABEL_IDLE loses its
    counters, matches and access-log series, and no longer appears."""
    from collectors.logs import tailer

    monkeypatch.setattr(tailer, "LABEL_IDLE", 0.5)
    monkeypatch.setattr(tailer, "LABELS_CHECK_EVERY", 0.0)
    old, new = tmp_path / "app-1.log", tmp_path / "app-2.log"
    old.write_text(
        'boom 192.0.2.1 - - [29/Nov/2026:07:00:00 +0000] "GET / HTTP/1.1" 500 5 "-" "x"\n'
    )
    sink = Committer()

    async def scenario():
        logs = collector(
            tmp_path,
            old,
            paths=(str(tmp_path / "app-*.log"),),
            rotate_wait=0.0,
            format="nginx_combined",
        )
        await logs.start(sink)
        await wait_until(lambda: logs.view.get("matches") and logs.view.get("requests"))
        got = logs.collect(time.time(), 0.0)
        before = {m.labels.get("file") for m in got}
        assert {m.labels["file"] for m in got if m.name == "http_requests_total"} == {str(old)}
        old.unlink()  # the day is over: the next day's file
        new.write_text("boom\n")
        labels = lambda: {m.labels.get("file") for m in logs.collect(time.time(), 0.0)}  # noqa: E731
        await wait_until(lambda: str(old) not in labels() and str(new) in labels())
        after = labels()
        await logs.stop()
        return before, after, logs

    before, after, logs = run(scenario())
    assert str(old) in before
    assert str(old) not in after and str(new) in after
    assert all(label != str(old) for _, label in logs.matches)
    assert str(old) not in logs.counters
    assert all(label != str(old) for label, _, _ in logs.requests)
