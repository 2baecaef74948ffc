"""Prometheus remote write 1.0 (https://prometheus.io/docs/specs/remote_write_spec/),
encoded by hand: a few protobuf helpers instead of the protobuf runtime,
which would cost the hub megabytes of RSS for three message types.

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }

The body is snappy's block format (not the framed one), POSTed with
`Content-Encoding: snappy`, `Content-Type: application/x-protobuf` and
`X-Prometheus-Remote-Write-Version: 0.1.0`. A series' labels are sorted by
name (byte order: `__name__` sorts after upper-case names), names are
Prometheus names, no value is empty and no name repeats: what breaks
these is not sent (`series_labels` returns None).

NaN: a value that is not a number is sent as the quiet NaN
0x7ff8000000000000, never as Prometheus' stale marker 0x7ff0000000000002
(a NaN too, which would end the series in PromQL): the hub stores NaN as
SQL NULL, so every NaN is rebuilt here from `NAN`, whatever bits the agent
sent.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from agent import __version__

CONTENT_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": f"vigil-hub/{__version__}",
}
NAN = struct.pack("<Q", 0x7FF8000000000000)  # the quiet NaN, little-endian
STALE_NAN = 0x7FF0000000000002  # Prometheus' stale marker: never sent
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_double = struct.Struct("<d").pack
_stamps: dict[int, bytes] = {}


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 as its 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def encode_labels(pairs: Iterable[tuple[str, str]]) -> bytes:
    """TimeSeries' `labels` fields, for (name, value) pairs in the order given."""
    out = []
    for name, value in pairs:
        label = _delimited(b"\x0a", name.encode()) + _delimited(b"\x12", value.encode())
        out.append(_delimited(b"\x0a", label))
    return b"".join(out)


def encode_sample(value: float | None, ts_ms: int) -> bytes:
    """A TimeSeries' `samples` field; None or NaN is the quiet NaN."""
    bits = NAN if value is None or value != value else _double(value)
    ts = _stamps.get(ts_ms)
    if ts is None:  # a batch's samples share their time: encode it once
        if len(_stamps) >= 4096:
            _stamps.clear()
        ts = _stamps[ts_ms] = varint(ts_ms)
    return b"\x12" + bytes((10 + len(ts), 9)) + bits + b"\x10" + ts


def write_request(series: Iterable[tuple[bytes, list[bytes]]]) -> bytes:
    """A WriteRequest of (encoded labels, [encoded samples]) per series."""
    return b"".join(_delimited(b"\x0a", labels + b"".join(samples)) for labels, samples in series)


def compress(body: bytes) -> bytes:
    import cramjam  # the forward package is imported only when forwards are configured

    return bytes(cramjam.snappy.compress_raw(body))


def series_labels(host: str, name: str, labels_json: str, extra: Mapping[str, str]) -> bytes | None:
    """A stored series' labels as sent, encoded (see `Labels`)."""
    split = split_labels(name, labels_json, extra)
    tag = host_label(host)
    return None if split is None or tag is None else split[0] + tag + split[1]


def split_labels(
    name: str, labels_json: str, extra: Mapping[str, str]
) -> tuple[bytes, bytes] | None:
    """A series' labels as sent but `host`: its labels (`host` renamed
    `exported_host`, as the hub's /metrics does), `extra` where it has no
    such label, and `__name__`; sorted and encoded, split where `host`
    goes. None when Prometheus would refuse them: a name that is not a
    Prometheus name, a label name of the reserved `__` kind, text that is
    not UTF-8."""
    if not METRIC_NAME.fullmatch(name):
        return None
    try:
        pairs: Any = json.loads(labels_json)
    except ValueError:
        return None
    if not isinstance(pairs, dict):
        return None
    if "host" in pairs:
        pairs["exported_host"] = pairs.pop("host")
    for key, value in extra.items():
        pairs.setdefault(key, value)
    out = [("__name__", name)]
    for key, value in pairs.items():
        if not LABEL_NAME.fullmatch(key) or key.startswith("__"):
            return None
        text = value if isinstance(value, str) else json.dumps(value)
        if text:  # an empty value is no label
            out.append((key, text))
    out.sort(key=lambda kv: kv[0].encode())
    before = [kv for kv in out if kv[0] < "host"]
    try:
        return encode_labels(before), encode_labels(out[len(before) :])
    except UnicodeEncodeError:  # a lone surrogate from JSON's \ud800
        return None


def host_label(host: str) -> bytes | None:
    try:
        return encode_labels([("host", host)])
    except UnicodeEncodeError:
        return None


class Labels:
    """Encoded label sets, cached: a series' labels but `host` by (name,
    labels), and each host's `host` label; a fleet's hosts share their
    series' names and labels, so both caches stay small. Bounded: a cache
    that fills is emptied."""

    def __init__(self, extra: Mapping[str, str], size: int = 50_000) -> None:
        self.extra, self.size = dict(extra), size
        self.series: dict[tuple[str, str], tuple[bytes, bytes] | None] = {}
        self.hosts: dict[str, bytes | None] = {}

    def get(self, host: str, name: str, labels_json: str) -> bytes | None:
        key = (name, labels_json)
        if key in self.series:
            split = self.series[key]
        else:
            if len(self.series) >= self.size:
                self.series.clear()
            split = self.series[key] = split_labels(name, labels_json, self.extra)
        if host in self.hosts:
            tag = self.hosts[host]
        else:
            if len(self.hosts) >= self.size:
                self.hosts.clear()
            tag = self.hosts[host] = host_label(host)
        if split is None or tag is None:
            return None
        return split[0] + tag + split[1]
