"""The wire protocol between agent and hub, version 1 (docs/protocol.md).

The one module both sides use: the agent encodes batches with it, the hub
decodes and validates them with it, and the golden vectors in
tests/fixtures/protocol pin the bytes. Nothing here does I/O.

A batch is a msgpack map::

    {"v": 1, "host": str, "stream": str, "first": int, "last": int,
     "agent": str, "sent": float, "records": [record, ...]}

`first`..`last` are the per-stream sequence numbers of the records, so
`last - first + 1 == len(records)`. A record is a map with "kind"
("metric" or "event") and "ts" (float seconds, UTC); a metric also has
"name" (str), "labels" (map of str to str), "value" (number) and "type"
("gauge" or "counter"); an event has "type" (str) and may have more.

The body is sent with `Content-Encoding: zstd` (also accepted: gzip,
identity). The hub decompresses with a limit, so a small compressed body
that expands enormously (a decompression bomb) is refused, not expanded.

Tokens are the hub's business (hub/auth.py): the agent only sends the
one it was given.
"""

from __future__ import annotations

import gzip
import math
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import zstandard

from agent.core.schema import check_host_id

VERSION = 1
MAX_COMPRESSED = 8 << 20  # bytes on the wire
MAX_DECOMPRESSED = 64 << 20  # bytes after decompression
MAX_RECORDS = 100_000
# What the hub accepts is what it can store and serve (tests/hub's property
# test holds the two together). The agent's records stay well inside:
# agent/core/records.py caps fields at depth 8 and strings at 16,384
# characters; a log line is at most its table's max_line_bytes.
MAX_SEQ = 1 << 53  # sequence numbers: exact as a JSON number, and far beyond any stream
MAX_DEPTH = 32  # containers nested in one record
MAX_STRING = 1 << 20  # characters in one string of a record
MAX_TS = 2.0**34  # seconds since 1970: the year 2514


class ProtocolError(ValueError):
    """A malformed batch: answered with 400 and never retried."""


class TooLarge(ValueError):
    """A body over the size limits, compressed or not: answered with 413."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding the hub does not speak: answered with 415."""


@dataclass(frozen=True)
class Batch:
    host: str
    stream: str
    first: int
    last: int
    agent: str
    sent: float
    records: list[dict[str, Any]]
    interval: float | None = None  # the agent's collection interval, for liveness


# -- encoding (agent side) -----------------------------------------------------


def encode_batch(
    host: str,
    stream: str,
    first: int,
    records: Sequence[Mapping[str, Any]],
    agent: str,
    sent: float,
    interval: float | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "v": VERSION,
        "host": host,
        "stream": stream,
        "first": first,
        "last": first + len(records) - 1,
        "agent": agent,
        "sent": sent,
        "records": list(records),
    }
    if interval is not None:  # absent from older agents' batches
        body["interval"] = interval
    return msgpack.packb(body)  # type: ignore[no-any-return]


def compress(body: bytes, encoding: str = "zstd") -> bytes:
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(body)
    if encoding == "gzip":
        return gzip.compress(body, mtime=0)
    if encoding == "identity":
        return body
    raise UnsupportedEncoding(encoding)


# -- decoding (hub side) -----------------------------------------------------


def decompress(
    data: bytes | bytearray, encoding: str, limit: int = MAX_DECOMPRESSED
) -> bytes | bytearray:
    """Undo Content-Encoding, refusing to produce more than `limit` bytes.
    `data` is not copied (the hub reads a body into a bytearray)."""
    if len(data) > MAX_COMPRESSED:
        raise TooLarge(f"body of {len(data)} bytes is over {MAX_COMPRESSED}")
    encoding = (encoding or "identity").strip().lower()
    try:
        if encoding == "identity":
            out: bytes | bytearray = data
        elif encoding == "zstd":
            one = _one_frame(data, limit)
            if one is not None:
                out = one
            else:  # several frames, or no declared size: read them all
                reader = _zstd().stream_reader(data)  # no copy
                chunks, size = [], 0
                while size <= limit and (chunk := reader.read(min(1 << 16, limit + 1 - size))):
                    chunks.append(chunk)
                    size += len(chunk)
                out = b"".join(chunks)
        elif encoding == "gzip":
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(data, limit + 1)
            if not d.eof and len(out) <= limit:
                raise ProtocolError("gzip body is truncated")
        else:
            raise UnsupportedEncoding(f"Content-Encoding {encoding!r}; use zstd, gzip or identity")
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"bad zstd body: {exc}") from exc
    except zlib.error as exc:
        raise ProtocolError(f"bad gzip body: {exc}") from exc
    if len(out) > limit:
        raise TooLarge(f"body expands beyond {limit} bytes")
    return out


_local = threading.local()


def _one_frame(data: bytes | bytearray, limit: int) -> bytes | None:
    """A body of one zstd frame that declares its size (what the agent
    sends): decompressed into one buffer of that size; zstd refuses a frame
    whose content is not that size. None for any other body."""
    size = zstandard.frame_content_size(data)  # the first frame's; -1: it does not say
    if not 0 <= size <= limit:
        return None
    try:
        out: bytes = _zstd().decompress(data, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        if "unused data" in str(exc):  # more frames follow
            return None
        raise
    return out


def _zstd() -> zstandard.ZstdDecompressor:
    """This thread's decompressor: a context costs an allocation of its
    window each time it is made (they are not thread-safe: one each)."""
    dctx = getattr(_local, "zstd", None)
    if dctx is None:
        dctx = _local.zstd = zstandard.ZstdDecompressor()
    return dctx


def decode_batch(body: bytes | bytearray) -> Batch:
    """Parse and validate a batch; ProtocolError names what is wrong."""
    try:
        data = msgpack.unpackb(body, raw=False, strict_map_key=True, max_array_len=MAX_RECORDS)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise ProtocolError(f"not a msgpack batch: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("a batch must be a map")
    if data.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}; this hub speaks 1")
    host = _str(data, "host", 253)
    if problem := check_host_id(host):
        raise ProtocolError(f"host {problem}")
    stream = _str(data, "stream", 64)
    first, last = _int(data, "first"), _int(data, "last")
    records = data.get("records")
    if not isinstance(records, list) or not records:
        raise ProtocolError("records must be a non-empty array")
    if first < 1 or last - first + 1 != len(records):
        raise ProtocolError(f"first={first}, last={last} do not match {len(records)} records")
    if last >= MAX_SEQ:
        raise ProtocolError(f"sequence numbers must stay below 2**53, got last={last}")
    for i, record in enumerate(records):
        _check_record(record, i)
    interval = None
    if "interval" in data:
        interval = _num(data, "interval")
        if not 0 < interval <= 86400:
            raise ProtocolError("interval must be seconds, more than 0 and at most a day")
    agent, sent = _str(data, "agent", 64), _num(data, "sent")
    return Batch(host, stream, first, last, agent, sent, records, interval)


def _check_tree(value: Any, depth: int) -> None:
    """Containers at most MAX_DEPTH deep, strings at most MAX_STRING long,
    map keys strings: what the store's JSON and every reader take."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ProtocolError(f"a string of {len(value)} characters; at most {MAX_STRING}")
    elif isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"nested deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ProtocolError(f"map keys must be strings, not {type(key).__name__}")
                _check_tree(key, depth)
                _check_tree(item, depth + 1)
        else:
            for item in value:
                _check_tree(item, depth + 1)
    elif isinstance(value, bytes) and len(value) > MAX_STRING:
        raise ProtocolError(f"a byte string of {len(value)} bytes; at most {MAX_STRING}")


def _str(data: Mapping[str, Any], key: str, max_len: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError(f"{key} must be a string of 1 to {max_len} characters")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{key} must be an integer")
    return value


def _num(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ProtocolError(f"{key} must be a finite number")
    return float(value)


_METRIC_KEYS = frozenset(("kind", "ts", "name", "labels", "value", "type"))


def metric_problem(name: str, labels: Mapping[str, str]) -> str | None:
    """Why the hub would refuse a metric of this name and labels, or None:
    the same limits as `_check_whole`, for sources whose names come from
    outside (a scraped endpoint, a textfile, StatsD), checked once per
    series so that one such series never costs a batch."""
    if not 0 < len(name) <= 200:
        return f"a name of {len(name)} characters; 1 to 200"
    for key, value in labels.items():
        if len(key) + len(value) > MAX_STRING:
            return f"label {key[:50]!r} over {MAX_STRING} characters"
    return None


def _plain_metric(record: dict[str, Any]) -> bool:
    """Whether `record` is a metric that passes every check below: a fast
    path for the records a batch is mostly made of (the hub validates a
    thousand batches a second). False sends it through `_check_record`'s
    full checks, which give the same verdict with a reason."""
    if record.get("kind") != "metric" or not record.keys() <= _METRIC_KEYS:
        return False
    ts: Any = record.get("ts")
    name, value = record.get("name"), record.get("value")
    if type(ts) not in (float, int) or not 0 <= ts <= MAX_TS:  # NaN fails the comparison
        return False
    if type(name) is not str or not 0 < len(name) <= 200 or type(value) not in (float, int):
        return False
    if record.get("type", "gauge") not in ("gauge", "counter"):
        return False
    labels = record.get("labels", _NO_LABELS)
    if type(labels) is not dict:
        return False
    for k, v in labels.items():
        if type(k) is not str or type(v) is not str or len(k) + len(v) > MAX_STRING:
            return False
    return True


_NO_LABELS: dict[str, str] = {}


def _check_record(record: object, i: int) -> None:
    if type(record) is dict and _plain_metric(record):
        return
    _check_whole(record, i)


def _check_whole(record: object, i: int) -> None:
    where = f"records[{i}]"
    if not isinstance(record, dict):
        raise ProtocolError(f"{where} must be a map")
    try:
        kind = record.get("kind")
        # A plain metric (most records) is flat: its checks below cover it;
        # anything else is walked whole.
        if kind != "metric" or not record.keys() <= _METRIC_KEYS:
            _check_tree(record, 0)
        if not 0 <= _num(record, "ts") <= MAX_TS:
            raise ProtocolError("ts must be seconds since 1970, before the year 2514")
        if kind == "metric":
            _str(record, "name", 200)
            labels = record.get("labels", {})
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) + len(v) <= MAX_STRING
                for k, v in labels.items()
            ):
                raise ProtocolError(f"labels must map strings to strings of {MAX_STRING} at most")
            value = record.get("value")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ProtocolError("value must be a number")
            if record.get("type", "gauge") not in ("gauge", "counter"):
                raise ProtocolError("type must be gauge or counter")
        elif kind == "event":
            _str(record, "type", 64)
        elif kind == "check":
            _str(record, "name", 200)
        else:
            raise ProtocolError(f"kind must be metric, event or check, not {kind!r}")
    except ProtocolError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
