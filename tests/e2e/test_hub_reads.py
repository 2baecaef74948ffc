"""Issue 13, item 4: reads never make ingest wait, and no read is unbounded.

A real `vigil hub run` holding half a million metric points and tens of
thousands of events (an unbounded read of them took seconds and stalled
every ingest) is read at the maximum page size from several threads at
once, while a well-behaved client posts real batches: every batch is
stored, and everything can still be read, page by page."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request

from agent.core import protocol
from bench.hub_reads import fill
from tests.e2e.test_hub_ingest import HubProcess

BULK_POINTS = 500_000
BULK_EVENTS = 40_000


def fetch(url: str, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_heavy_reads_never_hold_up_ingest_and_every_page_is_bounded(tmp_path):
    (tmp_path / "hub").mkdir()
    fill(tmp_path / "hub" / "hub.db", BULK_POINTS, BULK_EVENTS)  # as the bench fills it
    hub = HubProcess(tmp_path, max_body="8MiB")
    try:
        # unbounded or absurd reads are refused with the maximum named, not served
        for query, maximum in [
            ("metrics?limit=-1", "from 1 to 10000"),
            (f"metrics?limit={10**12}", "maximum of 10000 points per page"),
            (f"metrics?limit={10**33}", "maximum of 10000 points per page"),
            ("events?limit=1000000", "maximum of 1000 events per page"),
        ]:
            status, body = fetch(f"{hub.url}/v1/{query}")
            assert status == 400 and maximum in body["error"], body
        for query in ("metrics?since=nan", "metrics?until=inf", "events?since=-inf"):
            assert fetch(f"{hub.url}/v1/{query}")[0] == 400

        # the hostile side: max-size pages from 4 threads until the client is done
        done = threading.Event()
        reads: list[int] = []
        failures: list[str] = []

        def hammer(path: str) -> None:
            cursor = ""
            while not done.is_set():
                status, body = fetch(f"{hub.url}{path}{cursor}")
                if status != 200:
                    failures.append(f"{path}: {status} {body}")
                    return
                key = "series" if "series" in body else "events"
                size = sum(len(s["points"]) for s in body[key]) if key == "series" else None
                if (size is not None and size > 10_000) or len(body[key]) > 10_000:
                    failures.append(f"{path}: a page of {size or len(body[key])}")
                reads.append(1)
                cursor = f"&cursor={body['next']}" if body["next"] else ""

        readers = [
            threading.Thread(target=hammer, args=(path,), daemon=True)
            for path in (
                "/v1/metrics?limit=10000",
                "/v1/metrics?limit=10000&name=m&since=0",
                "/v1/events?limit=1000",
                "/v1/events?limit=1000&kind=log",
            )
        ]
        for r in readers:
            r.start()

        # the well-behaved client: real batches, each answered only once stored
        token, stream, seq = hub.token("web-01"), secrets.token_hex(16), 1
        sent = 0
        try:
            for n in range(40):
                now = time.time()
                records = [
                    {
                        "kind": "metric",
                        "name": "cpu",
                        "labels": {"cpu": str(c)},
                        "value": n,
                        "ts": now,
                        "type": "gauge",
                    }
                    for c in range(50)
                ] + [{"kind": "event", "type": "lifecycle", "ts": now, "n": n}]
                body = protocol.compress(
                    protocol.encode_batch("web-01", stream, seq, records, "0.1.0", now)
                )
                status, answer = hub.post(body, token)
                assert status == 200, answer
                assert answer == {"last_seq": seq + len(records) - 1, "stored": len(records)}
                seq += len(records)
                sent += len(records)
        finally:
            done.set()
            for r in readers:
                r.join(60)
        assert not failures, failures[:3]
        assert reads, "no read completed while the client was sending"

        # nothing lost: every record of every batch is there once, page by page
        points = hub.get_all("/v1/metrics?host=web-01&limit=1000", "series")
        assert sum(len(s["points"]) for s in points) == 40 * 50
        events = hub.get_all("/v1/events?host=web-01&kind=lifecycle&limit=7", "events")
        assert sorted(e["n"] for e in events) == list(range(40))
        [web] = [h for h in hub.get("/v1/hosts")["hosts"] if h["id"] == "web-01"]
        assert web["streams"] == [{"stream": stream, "last_seq": sent, "lost": 0}]
        # and the bulk, all half million points, reads out whole in pages
        bulk = hub.get_all("/v1/metrics?host=bulk-01&name=m", "series")
        assert sum(len(s["points"]) for s in bulk) == BULK_POINTS
    finally:
        assert hub.stop() == 0
