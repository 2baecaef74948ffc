"""The wire protocol against its golden vectors (docs/protocol.md), and the
hub side's refusals: malformed batches, unknown encodings, bombs."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from agent.core import protocol as p

GOLDEN = Path(__file__).parents[1] / "fixtures" / "protocol"
RECORDS = [
    {
        "kind": "metric",
        "name": "cpu_usage_percent",
        "labels": {"cpu": "all"},
        "value": 12.5,
        "type": "gauge",
        "ts": 1767225600.0,
    },
    {
        "kind": "metric",
        "name": "network_receive_bytes_total",
        "labels": {"device": "eth0"},
        "value": 123456789,
        "type": "counter",
        "ts": 1767225600.0,
    },
    {
        "kind": "event",
        "type": "lifecycle",
        "severity": "info",
        "message": "agent started",
        "fields": {},
        "ts": 1767225601.25,
    },
]
STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"


def test_golden_batch_encodes_to_the_documented_bytes():
    body = p.encode_batch("web-01", STREAM, 41, RECORDS, "0.1.0", 1767225602.5)
    assert body == (GOLDEN / "batch-v1.msgpack").read_bytes()
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert body.hex() in doc.replace("\n", "")


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("batch-v1.msgpack", "identity"),
        ("batch-v1.msgpack.gz", "gzip"),
        ("batch-v1.msgpack.zst", "zstd"),
    ],
)
def test_golden_bodies_decode_in_every_encoding(name, encoding):
    batch = p.decode_batch(p.decompress((GOLDEN / name).read_bytes(), encoding))
    assert (batch.host, batch.stream, batch.first, batch.last) == ("web-01", STREAM, 41, 43)
    assert batch.records == RECORDS and batch.agent == "0.1.0" and batch.sent == 1767225602.5


def body(**changes):
    data = {
        "v": 1,
        "host": "h",
        "stream": STREAM,
        "first": 1,
        "last": 1,
        "agent": "0.1.0",
        "sent": 1.0,
        "records": [dict(RECORDS[0])],
    }
    data.update(changes)
    return msgpack.packb(data)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not a msgpack batch"),
        (b"\xc1", "not a msgpack batch"),
        (msgpack.packb([1, 2]), "must be a map"),
        (body(v=2), "unsupported protocol version 2"),
        (body(host=""), "host must be a string"),
        (body(first="1"), "first must be an integer"),
        (body(last=5), "do not match 1 records"),
        (body(first=0, last=0), "do not match"),
        (body(records=[]), "non-empty array"),
        (body(records=[{"kind": "metric", "name": "x", "value": "1", "ts": 1.0}]), "value must be"),
        (
            body(
                records=[{"kind": "metric", "name": "x", "value": 1, "ts": 1.0, "labels": {"a": 1}}]
            ),
            "labels must map",
        ),
        (body(records=[{"kind": "wat", "ts": 1.0}]), "records[0]: kind must be"),
        (body(records=[{"kind": "event", "type": "log"}]), "records[0]: ts must be"),
        (body(sent=float("inf")), "sent must be a finite number"),
    ],
)
def test_malformed_batches_say_what_is_wrong(raw, message):
    with pytest.raises(p.ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        p.decode_batch(raw)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data):
    with contextlib.suppress(p.ProtocolError):
        p.decode_batch(data)


def test_bombs_and_oversize_bodies_are_refused_without_expanding():
    bomb = p.compress(b"\0" * (100 << 20), "zstd")
    assert len(bomb) < 100_000
    with pytest.raises(p.TooLarge):
        p.decompress(bomb, "zstd")
    with pytest.raises(p.TooLarge):
        p.decompress(gzip.compress(b"\0" * (100 << 20)), "gzip")
    with pytest.raises(p.TooLarge):
        p.decompress(b"x" * (p.MAX_COMPRESSED + 1), "identity")
    with pytest.raises(p.UnsupportedEncoding):
        p.decompress(b"x", "br")
    with pytest.raises(p.ProtocolError):
        p.decompress(b"not gzip at all", "gzip")


def _lying(frame: bytes, size: int) -> bytes:
    """A zstd frame whose header claims `size` bytes of content (a
    single-segment frame with a 2-byte content size field)."""
    assert frame[4] == 0b0110_0000  # single segment, 2-byte size: what the compressor wrote
    return frame[:5] + (size - 256).to_bytes(2, "little") + frame[7:]


def test_zstd_bodies_with_or_without_a_declared_size_decode_and_liars_are_refused():
    data = b"cpu_usage_percent 12.5\n" * 60
    framed = zstandard.ZstdCompressor().compress(data)
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert zstandard.frame_content_size(unsized) == -1
    assert p.decompress(framed, "zstd") == p.decompress(unsized, "zstd") == data
    for size in (len(data) - 100, len(data) + 100):  # the header lies either way
        with pytest.raises(p.ProtocolError, match="bad zstd body"):
            p.decompress(_lying(framed, size), "zstd")
    with pytest.raises(p.TooLarge):  # a declared size over the limit: never allocated
        p.decompress(framed, "zstd", limit=len(data) - 1)
    with pytest.raises(p.TooLarge):  # nor an undeclared one
        p.decompress(unsized, "zstd", limit=len(data) - 1)
    # several frames (a compressor that flushes into new frames): all are read
    assert p.decompress(framed + framed, "zstd") == data * 2
    with pytest.raises(p.TooLarge):
        p.decompress(framed + framed, "zstd", limit=len(data) * 2 - 1)


_hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["x" * (p.MAX_STRING - 1), "x" * (p.MAX_STRING + 1)]),
    st.sampled_from([{"k": "x" * (p.MAX_STRING - 1)}, {"k": "x" * p.MAX_STRING}]),
    st.just("x" * 201),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    st.dictionaries(st.integers(), st.text(max_size=3), min_size=1, max_size=1),
)
_FIELDS = ("kind", "name", "ts", "value", "type", "labels", "extra")


@st.composite
def _metric_like(draw: st.DrawFn) -> dict:
    """A valid metric with up to two fields made hostile or dropped."""
    record = {
        "kind": "metric",
        "name": draw(st.text(min_size=1, max_size=8)),
        "ts": draw(st.one_of(st.floats(0, 4e9), st.integers(0, 2**33))),
        "value": draw(st.one_of(st.floats(), st.integers(-(2**64), 2**64))),
        "type": draw(st.sampled_from(["gauge", "counter"])),
        "labels": draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3)),
    }
    for field in draw(st.lists(st.sampled_from(_FIELDS), max_size=2)):
        if draw(st.booleans()):
            record[field] = draw(_hostile_values)
        else:
            record.pop(field, None)
    return record


@given(_metric_like())
def test_the_fast_path_for_metrics_agrees_with_the_whole_check(record):
    """`_plain_metric` (the hub's fast path) only passes what the whole
    check passes, so a record's verdict never depends on the path taken."""
    try:
        p._check_whole(record, 0)
        whole = True
    except p.ProtocolError:
        whole = False
    if p._plain_metric(record):
        assert whole
    try:
        p._check_record(record, 0)
        assert whole
    except p.ProtocolError:
        assert not whole
