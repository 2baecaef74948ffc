"""The remote write encoder (hub/forward/remote_write.py) against a
protobuf decoder written here from the wire format's rules, and the
store's batches and cursors the forwarder walks."""

from __future__ import annotations

import json
import math
import struct
import time
from typing import Any

import cramjam
import pytest

from agent.core import protocol
from agent.core.worker import Worker
from hub.forward import remote_write
from tests.conftest import wait_for

# -- a protobuf decoder, generic: field number -> [values] ---------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf: bytes) -> list[tuple[int, Any]]:
    """Every field of a message: (number, value), wire types 0, 1, 2 and 5."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    assert i == len(buf), "a field runs past the message"
    return out


def decode_write_request(buf: bytes) -> list[dict[str, Any]]:
    """WriteRequest -> [{"labels": [(name, value)], "samples": [(value, ts)]}]."""
    series = []
    for number, ts_bytes in fields(buf):
        assert number == 1
        labels, samples = [], []
        for n, value in fields(ts_bytes):
            if n == 1:
                pair = dict(fields(value))
                labels.append((pair[1].decode(), pair[2].decode()))
            else:
                assert n == 2
                sample = dict(fields(value))
                ts = sample.get(2, 0)
                ts = ts - (1 << 64) if ts >= 1 << 63 else ts
                samples.append((struct.unpack("<d", sample[1])[0], ts))
        series.append({"labels": labels, "samples": samples})
    return series


# -- the encoder -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)])
def test_varints_round_trip(n):
    raw = remote_write.varint(n)
    value, end = _varint(raw, 0)
    assert end == len(raw) and len(raw) <= 10
    assert (value - (1 << 64) if value >= 1 << 63 else value) == n


def test_a_write_request_decodes_to_what_was_encoded():
    labels = remote_write.series_labels(
        "web-ü", "cpu_seconds_total", json.dumps({"mode": 'a"b\nc', "Zone": "z"}), {"dc": "x"}
    )
    assert labels is not None
    samples = [
        remote_write.encode_sample(v, ts)
        for v, ts in [(1.5, 1767225600000), (math.inf, -5), (-0.0, 0), (None, 4102444800000)]
    ]
    body = remote_write.write_request([(labels, samples)])
    [series] = decode_write_request(
        bytes(cramjam.snappy.decompress_raw(remote_write.compress(body)))
    )
    # sorted by name as bytes: upper case before "__name__"
    assert series["labels"] == [
        ("Zone", "z"),
        ("__name__", "cpu_seconds_total"),
        ("dc", "x"),
        ("host", "web-ü"),
        ("mode", 'a"b\nc'),
    ]
    values = [v for v, _ in series["samples"]]
    assert values[:3] == [1.5, math.inf, -0.0] and math.isnan(values[3])
    assert [t for _, t in series["samples"]] == [1767225600000, -5, 0, 4102444800000]


def test_nan_is_the_quiet_nan_never_the_stale_marker():
    stale = struct.unpack("<d", struct.pack("<Q", remote_write.STALE_NAN))[0]
    for value in (math.nan, stale, None, -math.nan):
        raw = remote_write.encode_sample(value, 1)
        assert raw[3:11] == struct.pack("<Q", 0x7FF8000000000000)


@pytest.mark.parametrize(
    "name,labels",
    [
        ("bad-name", {}),
        ("名前", {}),
        ("ok", {"bad label": "x"}),
        ("ok", {"__reserved": "x"}),
        ("ok", {"x": "\ud800"}),  # a lone surrogate: not UTF-8
    ],
)
def test_names_prometheus_refuses_are_not_encoded(name, labels):
    assert remote_write.series_labels("h", name, json.dumps(labels), {}) is None


def test_host_label_becomes_exported_host_and_extra_labels_do_not_override():
    raw = remote_write.series_labels(
        "h1",
        "m",
        json.dumps({"host": "inner", "dc": "mine", "empty": ""}),
        {"dc": "extra", "z": "1"},
    )
    assert raw is not None
    body = remote_write.write_request([(raw, [remote_write.encode_sample(1.0, 1)])])
    [series] = decode_write_request(body)
    assert series["labels"] == [
        ("__name__", "m"),
        ("dc", "mine"),
        ("exported_host", "inner"),
        ("host", "h1"),
        ("z", "1"),
    ]


# -- the store's side: batches and cursors ------------------------------------------------


def _batch(host: str, stream: str, first: int, n: int, ts: float) -> Any:
    records = [
        {"kind": "metric", "name": "m", "labels": {"i": str(i)}, "value": float(i),
         "type": "gauge", "ts": ts}
        for i in range(n)
    ]  # fmt: skip
    return protocol.decode_batch(protocol.encode_batch(host, stream, first, records, "t", ts))


S, T, U = "s" * 32, "t" * 32, "u" * 32


def test_each_batch_names_its_rows_and_rowids_are_never_reused(store, reader):
    now = time.time()
    store.ingest(_batch("a", S, 1, 3, now - 100), now)
    store.ingest(_batch("b", T, 1, 2, now), now)
    store.ingest(_batch("a", S, 2, 4, now), now)  # overlaps: stores 2 new records
    spans = reader.batches_after("a", S, 0, 10)
    # each batch's rows are one range of rowids (PostgreSQL: a range of its own
    # from a sequence, whatever other hubs insert at the same time)
    assert [(s.seq, s.hi - s.lo + 1) for s in spans] == [(3, 3), (5, 2)]
    assert spans[1].lo > spans[0].hi
    rows = reader.batch_rows(spans[1].lo, spans[1].hi, 10)
    assert [(r[0], r[4]) for r in rows] == [(spans[1].lo, 2.0), (spans[1].hi, 3.0)]
    assert [r[0] for r in reader.batch_rows(spans[0].lo + 1, spans[0].hi, 1)] == [spans[0].lo + 1]
    [other] = reader.batches_after("b", T, 0, 10)
    assert reader.batches_after("a", S, 3, 10) == spans[1:]
    assert {(h, st, m) for h, st, m in reader.stream_marks()} == {("a", S, 5), ("b", T, 2)}
    assert all(other.hi < s.lo or s.hi < other.lo for s in spans)  # ranges never overlap
    # a replay stores nothing and names nothing
    store.ingest(_batch("a", S, 2, 4, now), now)
    assert len(reader.batches_after("a", S, 0, 10)) == 2
    # the newest rows expire (an old backlog): their rowids are not given again
    store.ingest(_batch("c", U, 1, 2, now - 10_000), now)
    assert store.expire(now - 5_000, 100) >= 2
    store.ingest(_batch("c", U, 3, 1, now), now)
    [old, new] = reader.batches_after("c", U, 0, 10)
    assert new.lo > old.hi
    assert reader.batch_rows(old.lo, old.hi, 10) == []  # gone: the forwarder counts them expired
    # a batch goes once all its rows have gone, and it was committed before
    # retention and the skew allowed
    assert store.expire(now + 1, 100) > 0
    assert len(reader.batches_after("a", S, 0, 10)) == 2  # rows gone, batches kept
    assert store.expire(now + 1 + store.limits.max_clock_skew, 100) > 0
    assert reader.batches_after("a", S, 0, 10) == []
    assert reader.batches_after("c", U, 0, 10) == []
    # cursors
    store.forward_commit("vm", {("a", S): (3, 0), ("b", T): (2, 7)})
    store.forward_commit("vm", {("a", S): (5, 0)})
    assert reader.forward_cursors("vm") == {("a", S): (5, 0), ("b", T): (2, 7)}
    assert reader.forward_cursors("other") == {}


def test_postgres_cursors_only_move_on(pg_server):
    """A hub that lost a forward's lock without knowing commits late: it
    cannot take back what the hub leading the forward now committed."""
    from hub.store.postgres import PostgresStore

    store = PostgresStore(pg_server.database())
    try:
        store.forward_commit("vm", {("a", S): (5, 0), ("b", T): (2, 7)})
        store.forward_commit("vm", {("a", S): (3, 9), ("b", T): (2, 9)})
        reader = store.reader()
        assert reader.forward_cursors("vm") == {("a", S): (5, 0), ("b", T): (2, 9)}
        store.forward_commit("vm", {("a", S): (5, 4)})
        assert reader.forward_cursors("vm") == {("a", S): (5, 4), ("b", T): (2, 9)}
        reader.close()
    finally:
        store.close()


def _forwarder(store: Any, max_samples: int = 2000) -> Any:
    from hub.config import ForwardConfig
    from hub.forward.forwarder import Forwarder

    config = ForwardConfig(
        name="vm", url="http://127.0.0.1:9/api/v1/write", max_samples_per_send=max_samples
    )
    f = Forwarder(config, store, Worker("test-store"))
    f.reader = store.reader()
    return f


def _drain(f: Any, store: Any) -> list[float]:
    """Every sample the forwarder would send now, delivered at once: their
    values, in the order sent."""
    values = []
    while (send := f.collect()) is not None:
        if send.samples:
            body = bytes(cramjam.snappy.decompress_raw(send.body))
            values += [value for ts in decode_write_request(body) for value, _ in ts["samples"]]
        store.forward_commit(f.name, send.moved)
        f.cursors.update(send.moved)
    return values


def test_the_forwarder_reads_every_row_once_in_sends_of_any_size(store):
    now = time.time()
    store.ingest(_batch("a", S, 1, 5, now), now)
    store.ingest(_batch("b", T, 1, 3, now), now)
    store.ingest(_batch("a", S, 6, 4, now), now)
    f = _forwarder(store, max_samples=2)  # batches split across sends
    try:
        got = _drain(f, store)
        assert f.leading
        assert sorted(got) == sorted([*map(float, range(5)), *map(float, range(3)),
                                      *map(float, range(4))])  # fmt: skip
        store.ingest(_batch("b", T, 4, 2, now), now)
        assert sorted(_drain(f, store)) == [0.0, 1.0]
        assert _drain(f, store) == []
        # a new forwarder (a restart) starts from the durable cursors
        again = _forwarder(store)
        assert _drain(again, store) == []
        again.reader.close()
    finally:
        f.reader.close()


def test_one_hub_of_two_on_postgres_sends_a_forward_the_other_takes_over(pg_server):
    from hub.store.postgres import PostgresStore

    dsn = pg_server.database()
    a, b = PostgresStore(dsn), PostgresStore(dsn)
    now = time.time()
    try:
        fa, fb = _forwarder(a, max_samples=3), _forwarder(b, max_samples=3)
        a.ingest(_batch("h", S, 1, 4, now), now)
        b.ingest(_batch("h", S, 5, 4, now), now)  # the same stream, through the other hub
        first = fa.collect()
        assert first is not None and first.samples == 3 and fa.leading
        assert fb.collect() is None and not fb.leading  # a leads: b stands by
        a.forward_commit("vm", first.moved)  # a delivered its first send...
        a.close()  # ...and dies: its session, and the lock, with it
        fa.reader.close()
        # the server ends a's session: b takes the lock, and the cursors
        wait_for(lambda: fb._lead(), 30, "b leading the forward")
        rest = _drain(fb, b)
        assert sorted(rest) == [0.0, 1.0, 2.0, 3.0, 3.0]  # the rest of the first batch, the second
        fb.reader.close()
    finally:
        a.close()
        b.close()
