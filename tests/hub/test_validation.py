"""What the hub's validator accepts, its store stores and its reads serve
as strict JSON (issue 13, item 8): a batch is refused with 400 up front, or
stored; never accepted and then failed in the store (a 500 the agent would
retry for ever, blocking its stream)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core import protocol
from hub.store import Limits
from hub.store.sqlite import SQLiteStore

NOW = 1_800_000_000.0
INTS = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63), 2**53, 2**53 + 1]),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT, st.binary(max_size=8))
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(TEXT, st.binary(max_size=4)), inner, max_size=3),
    ),
    max_leaves=12,
)
# Mostly plausible, so that most batches pass and reach the store; the
# rest probe the edges.
PLAUSIBLE_TS = st.floats(0, 2.0**34)
TS = st.one_of(PLAUSIBLE_TS, PLAUSIBLE_TS, PLAUSIBLE_TS, FLOATS, INTS, st.just(NOW + 2.4e9))
NAME = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"k": [value]}
    return value


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["metric", "event", "check"]))
    record: dict[str, Any] = {"kind": kind, "ts": draw(TS)}
    if kind == "metric":
        record |= {
            "name": draw(st.one_of(NAME, NAME, TEXT)),
            "labels": draw(st.dictionaries(TEXT, TEXT, max_size=3)),
            "value": draw(st.one_of(INTS, FLOATS)),
            "type": draw(st.sampled_from(["gauge", "counter"])),
        }
    else:
        record |= {"type" if kind == "event" else "name": draw(st.one_of(NAME, NAME, TEXT))}
        record["fields"] = draw(st.one_of(TREES, st.integers(0, 250).map(deep)))
    return record


@st.composite
def batches(draw: st.DrawFn) -> bytes:
    recs = draw(st.lists(records(), min_size=1, max_size=4))
    first = draw(st.one_of(st.integers(1, 100), st.integers(1, 100), INTS))
    first = min(first, 2**64 - len(recs))
    body = {
        "v": 1,
        "host": draw(st.sampled_from(["web-01", "häst", "日本"])),
        "stream": "s" * 32,
        "first": first,
        "last": first + len(recs) - 1,
        "agent": "0.1.0",
        "sent": NOW,
        "records": recs,
    }
    return msgpack.packb(body, use_bin_type=True)


def strict(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SQLiteStore:
    s = SQLiteStore(Path(tmp_path_factory.mktemp("hub")) / "hub.db")
    s.limits = Limits(max_series_per_host=10**9, max_new_series_per_batch=10**9)
    return s


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=batches())
def test_anything_the_validator_accepts_is_stored_and_served_as_json(store, body):
    try:
        batch = protocol.decode_batch(body)
    except protocol.ProtocolError:
        return  # a 400: the agent dead-letters it
    done = store.ingest(batch, NOW)
    assert done.last_seq >= batch.last
    reader = store.reader()
    strict(reader.hosts())
    strict(reader.events(batch.host, None, 0, 50).items)
    for series in reader.metrics(batch.host, None, 0, 1e12, 500).items:
        strict(series)
        assert all(v is None or math.isfinite(v) for _, v in series["points"])
    reader.close()


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ({"kind": "event", "type": "log", "ts": NOW, "f": deep(40)}, "nested deeper than 32"),
        ({"kind": "event", "type": "log", "ts": NOW, "f": {b"k": 1}}, "map keys must be strings"),
        ({"kind": "event", "type": "log", "ts": 2**63}, "before the year 2514"),
        ({"kind": "event", "type": "log", "ts": -5.0}, "seconds since 1970"),
        ({"kind": "event", "type": "log", "ts": NOW, "x": "a" * (2**20 + 1)}, "at most 1048576"),
    ],
)
def test_what_cannot_be_stored_is_refused_with_a_reason(record, why):
    body = protocol.encode_batch("web-01", "s" * 32, 1, [record], "0.1.0", NOW)
    with pytest.raises(protocol.ProtocolError, match=why):
        protocol.decode_batch(body)


@pytest.mark.parametrize("first", [2**53, 2**63 - 1, 2**64 - 1])
def test_sequence_numbers_are_bounded(first):
    body = msgpack.packb(
        {"v": 1, "host": "web-01", "stream": "s" * 32, "first": first, "last": first,
         "agent": "0.1.0", "sent": NOW, "records": [{"kind": "event", "type": "x", "ts": NOW}]}
    )  # fmt: skip
    with pytest.raises(protocol.ProtocolError, match="below 2\\*\\*53"):
        protocol.decode_batch(body)


@pytest.mark.parametrize("host", ["", " ", "a b", "a\nb", "a/b", "x" * 254, "\x00"])
def test_host_ids_follow_the_agents_rule(host):
    body = protocol.encode_batch(host, "s" * 32, 1, [{"kind": "event", "type": "x", "ts": NOW}],
                                 "0.1.0", NOW)  # fmt: skip
    with pytest.raises(protocol.ProtocolError, match="host"):
        protocol.decode_batch(body)
