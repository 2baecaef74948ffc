"""agent/core/records.py's `encodable` on literal hostile values: what it
returns msgpack and the hub's JSON both take."""

from __future__ import annotations

import json
import math

import msgpack

from agent.core.records import MAX_DEPTH, MAX_ITEMS, MAX_TEXT, encodable, encodable_record


def test_values_beyond_what_msgpack_and_json_carry_become_text():
    assert encodable(10**30) == str(10**30) and encodable(-(2**64)) == str(-(2**64))
    assert encodable(2**64 - 1) == 2**64 - 1  # still a msgpack integer: kept
    assert encodable(10**5000).startswith("(integer of ")  # beyond int-to-text
    assert [encodable(x) for x in (math.nan, math.inf, -math.inf)] == ["nan", "inf", "-inf"]
    assert encodable("x\udc80y") == "x\ufffd\ufffd\ufffdy"  # a lone surrogate
    assert encodable(b"\xffok") == "\ufffdok"
    assert encodable({1: (2, 3), "k": None}) == {"1": [2, 3], "k": None}


def test_size_and_depth_are_capped():
    deep: list = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    reduced = encodable(deep)
    for _ in range(MAX_DEPTH):
        reduced = reduced[0]
    assert reduced == f"(nested deeper than {MAX_DEPTH} levels, left out)"
    assert len(encodable("x" * (MAX_TEXT + 5))) == MAX_TEXT
    assert len(encodable(list(range(MAX_ITEMS + 5)))) == MAX_ITEMS
    assert len(encodable({str(i): i for i in range(MAX_ITEMS + 5)})) == MAX_ITEMS


def test_a_reduced_record_packs_and_a_metric_keeps_a_number():
    event = {"kind": "event", "ts": 1.0, "fields": {"code": 10**30, "v": math.nan}}
    metric = {"kind": "metric", "name": "m", "value": 10**400, "ts": 1.0}
    for record in (encodable_record(event), encodable_record(metric)):
        msgpack.packb(record)
        json.dumps(record, allow_nan=record["kind"] == "metric")
    assert encodable_record(metric)["value"] == math.inf
    assert encodable_record(event)["fields"] == {"code": str(10**30), "v": "nan"}
