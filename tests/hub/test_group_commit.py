"""Group commit (hub/ingest.py `Committer`): batches that arrive while the
store thread writes go together in its next transaction, each answered
with its own outcome. A real SQLite store and the hub's store thread; the
thread is held busy by a job of the test's, so the grouping is certain."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from agent.core.worker import Worker
from hub.ingest import Committer
from hub.store import Ingested, Limits, SeriesLimit
from hub.store.sqlite import SQLiteStore
from tests.hub.test_store import T0, metric, seqs, wire


def test_batches_waiting_for_the_store_share_one_commit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "hub.db")
    store.limits = Limits(max_new_series_per_batch=3, retention=0.0)
    thread = Worker("store")
    committer = Committer(store, thread)
    release = threading.Event()

    async def main() -> list[object]:
        held = asyncio.ensure_future(thread.run(release.wait, 30))
        batches = [wire(1, 2, host=f"h{i}") for i in range(5)]
        batches.append(wire(1, 4, host="over"))  # over max_new_series_per_batch
        waiting = [asyncio.ensure_future(committer.ingest(store.prepare(b, T0))) for b in batches]
        await asyncio.sleep(0.05)
        assert committer.groups == 1 and committer.batches == 6  # one group, queued
        release.set()
        await held
        out = await asyncio.gather(*waiting, return_exceptions=True)
        # and the next batch, alone, commits at once in a group of its own
        out.append(await committer.ingest(store.prepare(wire(3, 1, host="h0"), T0)))
        return out

    out = asyncio.run(main())
    assert out[:5] == [Ingested(2, 2)] * 5
    assert isinstance(out[5], SeriesLimit)
    assert out[6] == Ingested(3, 1)
    assert (committer.groups, committer.batches) == (2, 7)
    reader = store.reader()
    assert [seqs(reader, f"h{i}") for i in range(5)] == [[1, 2, 3]] + [[1, 2]] * 4
    assert seqs(reader, "over") == []
    reader.close()
    thread.shutdown()
    store.close()


def test_groups_follow_each_other_while_batches_keep_arriving(tmp_path: Path) -> None:
    """Batches that arrive during a commit wait for the next group, never
    for a timer, and none is answered before its own commit."""
    store = SQLiteStore(tmp_path / "hub.db")
    store.limits = Limits(retention=0.0)
    thread = Worker("store")
    committer = Committer(store, thread)

    async def one(host: str, n: int) -> list[Ingested]:
        return [
            await committer.ingest(
                store.prepare(wire(seq, records=[metric(seq, ts=T0 + seq)], host=host), T0)
            )
            for seq in range(1, n + 1)
        ]

    async def main() -> list[list[Ingested]]:
        return await asyncio.gather(*(one(f"h{i}", 20) for i in range(30)))

    out = asyncio.run(main())
    assert all(o == [Ingested(s, 1) for s in range(1, 21)] for o in out)
    assert committer.batches == 600 and committer.groups < 600
    reader = store.reader()
    assert all(seqs(reader, f"h{i}") == list(range(1, 21)) for i in range(30))
    reader.close()
    thread.shutdown()
    store.close()
