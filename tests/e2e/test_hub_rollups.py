"""Rollups and retention on a real hub (issue 14, item 5): `GET
/v1/metrics?step=&agg=` answers from the 5-minute rollups, and under a
steady load with tiny retentions the database stops growing: rows are
expired and their pages reused."""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from agent.core import protocol
from tests.conftest import wait_for
from tests.e2e.test_hub_ingest import STREAM, HubProcess


def batch(host: str, seq: int, records: list[dict[str, Any]]) -> bytes:
    body = protocol.encode_batch(host, STREAM, seq, records, "0.1.0", time.time())
    return protocol.compress(body)


def gauge(name: str, ts: float, value: float, **labels: str) -> dict[str, Any]:
    return {"kind": "metric", "name": name, "labels": labels, "ts": ts, "value": value}


def status(hub: HubProcess, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(hub.url + path, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_metrics_read_by_step_from_the_rollups(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    try:
        token = hub.token("web-01")
        # the previous hour's start: both 5-minute buckets below fall in one hour
        # whatever the wall clock (b + 300 crossed an hour in the last 5 minutes of one)
        b = math.floor(time.time() / 3600) * 3600 - 3600
        records = [gauge("load", b + 10 * i, v, cpu="0") for i, v in enumerate([4, 1, 7, 2])]
        records += [gauge("load", b + 300, 9.0, cpu="0"), gauge("load", b + 5, 3.0, cpu="1")]
        assert hub.post(batch("web-01", 1, records), token)[0] == 200
        raw = hub.get("/v1/metrics?name=load")
        assert sum(len(s["points"]) for s in raw["series"]) == 6  # raw, as before
        assert hub.get("/v1/metrics?name=load&step=raw") == raw
        by = {
            agg: {
                s["labels"]["cpu"]: s["points"]
                for s in hub.get(f"/v1/metrics?name=load&step=5m&agg={agg}")["series"]
            }
            for agg in ("avg", "min", "max", "last", "count")
        }
        assert by["avg"] == {"0": [[b, 3.5], [b + 300, 9.0]], "1": [[b, 3.0]]}
        assert by["min"]["0"] == [[b, 1.0], [b + 300, 9.0]]
        assert by["max"]["0"] == [[b, 7.0], [b + 300, 9.0]]
        assert by["last"]["0"] == [[b, 2.0], [b + 300, 9.0]]
        assert by["count"]["0"] == [[b, 4.0], [b + 300, 1.0]]
        assert hub.get("/v1/metrics?name=load&step=5m") == hub.get(
            "/v1/metrics?name=load&step=5m&agg=avg"
        )
        hour = math.floor(b / 3600) * 3600
        [cpu0] = hub.get("/v1/metrics?name=load&step=1h&agg=max&host=web-01")["series"][:1]
        assert cpu0["points"] == [[hour, 9.0]]
        # page by page, one point each: every bucket once
        pages = hub.get_all("/v1/metrics?name=load&step=5m&limit=1", "series")
        assert [(s["labels"]["cpu"], p[0]) for s in pages for p in s["points"]] == [
            ("0", b),
            ("0", b + 300),
            ("1", b),
        ]
        # bad steps and aggregates are refused with a reason, never a 500
        for query, words in [
            ("step=7m", "multiple of 5m"),
            ("step=5", "multiple of 5m"),
            ("step=-5m", "multiple of 5m"),
            ("step=0s", "multiple of 5m"),
            ("step=" + "9" * 60 + "d", "multiple of 5m"),
            ("step=5m&agg=median", "agg must be one of"),
            ("agg=max", "agg needs a step"),
        ]:
            code, answer = status(hub, f"/v1/metrics?name=load&{query}")
            assert (code, words in answer["error"]) == (400, True), (query, answer)
        first = hub.get("/v1/metrics?name=load&step=5m&limit=1")["next"]
        code, answer = status(hub, f"/v1/metrics?name=load&step=1h&cursor={first}")
        assert code == 400 and "cursor" in answer["error"]
        code, answer = status(hub, f"/v1/metrics?name=load&cursor={first}")  # a raw read
        assert code == 400 and "cursor" in answer["error"]
    finally:
        assert hub.stop() == 0


def db_stats(path: Path) -> dict[str, int]:
    """Rows and pages of the hub's database, as a reader sees its last commit."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        stats = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("metrics", "events", "rollups", "series")
        }
        for pragma in ("page_count", "freelist_count", "page_size"):
            stats[pragma] = db.execute(f"PRAGMA {pragma}").fetchone()[0]
        return stats
    finally:
        db.close()


def test_the_database_stops_growing_once_retention_applies(tmp_path: Path) -> None:
    """Rounds of the same steady load (a fleet of 4 hosts, 50 series and 5
    events a batch), each until retention has taken what it wrote: after the
    first rounds the file holds what one round needs and no more, because
    the pages retention frees are reused."""
    hub = HubProcess(tmp_path, retention="2s", extra='retention_rollup = "2s"\n')
    path = tmp_path / "hub" / "hub.db"
    hosts = [f"web-{i:02d}" for i in range(4)]
    tokens = {h: hub.token(h) for h in hosts}
    seqs = dict.fromkeys(hosts, 1)
    rounds, batches_per_round = 6, 40
    try:
        stats = []
        for _ in range(rounds):
            for i in range(batches_per_round):
                host = hosts[i % len(hosts)]
                now = time.time()
                records = [gauge(f"m{j}", now, float(i * j), disk="sda") for j in range(50)]
                records += [
                    {"kind": "event", "type": "log", "ts": now, "line": "x" * 200 + str(j)}
                    for j in range(5)
                ]
                assert hub.post(batch(host, seqs[host], records), tokens[host])[0] == 200
                seqs[host] += len(records)
            written = db_stats(path)
            # what this round stored is there, and nothing of the rounds before it
            assert written["metrics"] <= batches_per_round * 50
            assert written["rollups"] > 0
            stats.append(
                wait_for(
                    lambda: (
                        (s := db_stats(path))["metrics"] + s["events"] + s["rollups"] + s["series"]
                        == 0
                        and s
                    ),
                    60,
                    "retention to take the round",
                )
            )
        pages = [s["page_count"] for s in stats]
        print("page_count after each round:", pages, "page_size", stats[0]["page_size"])
        print("freelist_count after each round:", [s["freelist_count"] for s in stats])
        # every round frees what it wrote: the free pages are most of the file...
        assert all(s["freelist_count"] > s["page_count"] / 2 for s in stats)
        # ...and the next round writes into them: the file stays the size of
        # the second round (the first makes the schema's pages, too), though
        # rounds 3-6 wrote four times as much again
        grown = pages[0] - 2  # pages one round took in an empty database, roughly
        assert pages[-1] - pages[1] < grown / 4, pages
    finally:
        assert hub.stop() == 0
