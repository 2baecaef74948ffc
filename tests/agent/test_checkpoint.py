"""State committed in step with the disk buffer (agent/core/checkpoint.py): after
a crash at any point of a commit, the state on disk and the records in the
buffer agree."""

from __future__ import annotations

import pytest

from agent.buffer import DiskBuffer
from agent.core.checkpoint import CheckpointStore


def records(n: int, tag: str) -> list[dict]:
    return [{"kind": "event", "type": "log", "message": f"{tag}-{i}", "ts": 1.0} for i in range(n)]


def reopen(tmp_path):
    buffer = DiskBuffer(tmp_path / "buffer")
    store = CheckpointStore(tmp_path / "logs")
    return buffer, store


def test_a_commit_is_loaded_back(tmp_path):
    buffer, store = reopen(tmp_path)
    assert store.load("tail", buffer) is None
    store.commit(buffer, records(3, "a"), {"tail": {"offset": 30}})
    assert buffer.next_seq == 4
    buffer.close()
    buffer, store = reopen(tmp_path)
    assert store.load("tail", buffer) == {"offset": 30}


def test_crash_after_the_append_keeps_the_pending_state(tmp_path):
    buffer, store = reopen(tmp_path)
    store.commit(buffer, records(2, "a"), {"tail": {"offset": 20}})
    # the next commit got as far as the append, then the process died
    tag = [buffer.stream, buffer.next_seq + 2 - 1]
    store._write(store._path("tail", pending=True), tag, {"offset": 40})
    buffer.append(records(2, "b"))
    buffer.close()
    buffer, store = reopen(tmp_path)
    assert store.load("tail", buffer) == {"offset": 40}
    assert not store._path("tail", pending=True).exists()


def test_crash_before_the_append_keeps_the_last_committed_state(tmp_path):
    buffer, store = reopen(tmp_path)
    store.commit(buffer, records(2, "a"), {"tail": {"offset": 20}})
    tag = [buffer.stream, buffer.next_seq + 2 - 1]
    store._write(store._path("tail", pending=True), tag, {"offset": 40})
    buffer.close()  # died before appending: those events are not in the buffer
    buffer, store = reopen(tmp_path)
    assert store.load("tail", buffer) == {"offset": 20}
    assert store.discarded["tail"] == {"offset": 40}
    # later appends by others must not make the stale pending state look committed
    buffer.append(records(5, "metrics"))
    assert CheckpointStore(tmp_path / "logs").load("tail", buffer) == {"offset": 20}
    buffer.close()


def test_appends_made_after_the_restart_but_before_the_load_vouch_for_nothing(tmp_path):
    """At start the alerting and the shipper may append (transition events,
    metrics) before the log collector loads its state: only what was in the
    buffer when this process opened it can hold the crashed run's append."""
    buffer, store = reopen(tmp_path)
    store.commit(buffer, records(2, "a"), {"tail": {"offset": 20}})
    tag = [buffer.stream, buffer.next_seq + 2 - 1]
    store._write(store._path("tail", pending=True), tag, {"offset": 40})
    buffer.close()  # died before appending its 2 events
    buffer, store = reopen(tmp_path)
    opened_at = buffer.next_seq
    buffer.append(records(3, "alert events"))  # the new run appends first...
    assert store.load("tail", buffer, opened_at) == {"offset": 20}  # ...then loads
    buffer.close()


def test_a_pending_state_from_another_stream_is_not_trusted(tmp_path):
    buffer, store = reopen(tmp_path)
    store._write(store._path("tail", pending=True), ["0" * 32, 1], {"offset": 99})
    buffer.append(records(3, "x"))
    assert store.load("tail", buffer) is None
    buffer.close()


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), ValueError("a bug")], ids=["disk", "bug"]
)
def test_a_failed_append_commits_nothing(tmp_path, error):
    """Whatever the append raised: a pending file left behind would be taken
    as committed once other records moved the buffer past its tag."""
    buffer, store = reopen(tmp_path)
    store.commit(buffer, records(1, "a"), {"tail": {"offset": 10}})

    def full(_records):
        raise error

    buffer.append = full  # type: ignore[method-assign]
    with pytest.raises(type(error)):
        store.commit(buffer, records(1, "b"), {"tail": {"offset": 20}})
    assert not store._path("tail", pending=True).exists()
    assert CheckpointStore(tmp_path / "logs").load("tail", buffer) == {"offset": 10}
    del buffer.append
    buffer.close()


def test_without_records_or_buffer_the_state_is_written_directly(tmp_path):
    store = CheckpointStore(tmp_path / "logs")
    store.load("tail", None)
    store.commit(None, [], {"tail": {"offset": 5}, "templates": [1, 2]})
    again = CheckpointStore(tmp_path / "logs")
    assert again.load("tail", None) == {"offset": 5}
    assert again.load("templates", None) == [1, 2]


def test_a_damaged_state_file_is_set_aside_and_the_agent_starts(tmp_path):
    store = CheckpointStore(tmp_path / "logs")
    store.load("tail", None)
    (tmp_path / "logs" / "tail").write_bytes(b"\xc1garbage")
    store = CheckpointStore(tmp_path / "logs")
    assert store.load("tail", None) is None
    assert (tmp_path / "logs" / "tail.corrupt").exists()
    assert "tail" in store.repairs[0]
