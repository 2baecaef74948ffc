"""hub/sla.py against a real store: availability, target, error budget and
p95 latency from check runs as agents send them (the records of
collectors/checks/runner.py: a `check` record and `check_up`)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core import protocol
from hub.sla import budget_left, checks, p95, parse_target
from hub.store import Store

DAY = 1767225600.0  # 2026-01-01T00:00:00Z
S1 = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"


def run(name: str, ts: float, ok: bool, latency: float, **labels: str) -> list[dict[str, Any]]:
    """One check run's records, as the agent's runner makes them (the ones the hub reads)."""
    tags = {**labels, "check": name, "type": "http"}
    return [
        {"kind": "check", "name": name, "type": "http", "ok": ok,
         "status": "ok" if ok else "critical", "latency": latency, "message": "",
         "attempts": [], "labels": tags, "fields": {}, "ts": ts},
        {"kind": "metric", "name": "check_up", "labels": tags, "value": float(ok), "ts": ts},
        {"kind": "metric", "name": "check_duration_seconds", "labels": tags,
         "value": latency, "ts": ts},
    ]  # fmt: skip


def feed(store: Store, host: str, records: list[dict[str, Any]], first: int = 1) -> int:
    newest = max(r["ts"] for r in records)  # received then: nothing is clamped as ahead
    body = protocol.encode_batch(host, S1, first, records, "0.1.0", newest, 60.0)
    store.ingest(protocol.decode_batch(body), newest)
    return first + len(records)


def test_availability_budget_and_p95_are_exact(store, reader):
    # the day: 100 runs of "api", 10 minutes apart; 99 pass, 1 fails;
    # latencies of the passing runs: 0.01 .. 0.99 (p95 by nearest rank: 0.95)
    records = []
    for i in range(100):
        ok = i != 50
        latency = ((i if i < 50 else i - 1) + 1) / 100 if ok else 9.0
        records += run("api", DAY + i * 600, ok, latency)
    # the 29 days before: 900 runs, all passing: 30 days = 999 / 1000 = the target
    before = [r for i in range(900) for r in run("api", DAY - 86400 - i * 2000, True, 0.5)]
    seq = feed(store, "web-01", before)
    feed(store, "web-01", records, seq)
    [sla] = checks(reader, DAY, DAY + 86400)
    assert sla.to_dict() == {
        "host": "web-01",
        "check": "api",
        "availability": 0.99,
        "target": 0.999,
        "error_budget_left": 0.0,
        "p95_latency_seconds": 0.95,
        "runs": 100,
        "passing": 99,
    }
    # the day before alone: all passing, budget untouched
    [earlier] = checks(reader, DAY - 86400, DAY, target=0.99)
    assert (earlier.availability, earlier.error_budget_left) == (1.0, 1.0)


def test_a_check_label_sets_its_own_target(store, reader):
    records = [r for i in range(10) for r in run("db", DAY + i * 60, i != 0, 0.1,
                                                   availability_target="99%")]  # fmt: skip
    feed(store, "db-01", records)
    [sla] = checks(reader, DAY, DAY + 86400, target=0.5)
    assert (sla.availability, sla.target, sla.error_budget_left) == (0.9, 0.99, -9.0)


def test_no_runs_no_rows_and_hosts_filter(store, reader):
    assert checks(reader, DAY, DAY + 86400) == []
    feed(store, "a", run("x", DAY + 5, True, 0.2))
    feed(store, "b", run("x", DAY + 5, False, 0.2))
    assert [s.host for s in checks(reader, DAY, DAY + 86400)] == ["a", "b"]
    [b] = checks(reader, DAY, DAY + 86400, hosts=["b"])
    assert (b.availability, b.p95_latency_seconds) == (0.0, None)
    with pytest.raises(ValueError):
        checks(reader, DAY, DAY + 86400, target=1.0)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.995", 0.995), ("99.5%", 0.995), ("1", None), ("0", None), ("nan", None),
     ("abc", None), (None, None), ("1e400", None), ("-0.5", None)],
)  # fmt: skip
def test_parse_target(text, value):
    assert parse_target(text) == value


def test_pure_figures():
    assert p95([]) is None
    assert p95([1.0]) == 1.0
    assert p95([float(i) for i in range(1, 21)]) == 19.0
    assert round(budget_left(0.9995, 0.999), 6) == 0.5
