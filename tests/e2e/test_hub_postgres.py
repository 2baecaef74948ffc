"""Two real `vigil hub run` processes on one real PostgreSQL (issue 15,
item 2): a sender with the real protocol and token alternates between them
batch by batch, replays batches to the other hub, sends one batch to both
at once, and one hub is killed with SIGKILL in the middle of a batch and
started again. Every record is stored exactly once, both hubs answer the
same /v1/hosts, and HostSilent fires once for the fleet, not once per hub,
even when the hub that raised it dies and the other takes over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.core import protocol
from hub.auth import host_token
from tests.conftest import wait_for
from tests.e2e.harness import VIGIL, free_port, wait_http

pytestmark = pytest.mark.e2e

SECRET = b"0123456789abcdef0123456789abcdef-shared-by-both-hubs"
STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
PASSWORD = "hunter2-never-logged"


class Hub:
    """One hub process on the shared store; `start` again after a kill."""

    def __init__(self, tmp: Path, name: str, dsn: str) -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        (self.dir / "dsn").write_text(f"{dsn} password={PASSWORD}\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.notified = self.dir / "alerts.jsonl"
        self.config = self.dir / "hub.toml"
        self.config.write_text(
            f'[hub]\nlisten = "127.0.0.1:{self.port}"\ndata_dir = "{self.dir / "data"}"\n'
            f'secret_file = "{tmp / "secret"}"\nretention_raw = "0s"\n'
            'retention_events = "0s"\nsilent_after = "3s"\n'
            f'[[hub.notifiers]]\nname = "ops"\ntype = "file"\npath = "{self.notified}"\n'
            f'[store]\nbackend = "postgres"\ndsn_file = "{self.dir / "dsn"}"\n'
        )
        self.log_path = self.dir / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*VIGIL, "hub", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_http(self.url + "/healthz", timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def post(self, body: bytes, host: str) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            self.url + "/v1/ingest",
            data=body,
            headers={
                "Content-Encoding": "zstd",
                "Content-Type": "application/msgpack",
                "Authorization": f"Bearer {host_token(host, SECRET)}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except OSError:  # the hub died under the request
            return 0, {}

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as resp:
            return json.load(resp)

    def notifications(self) -> list[dict[str, Any]]:
        if not self.notified.exists():
            return []
        return [json.loads(line) for line in self.notified.read_text().splitlines() if line]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def leads(self, job: str) -> bool:
        return any("store_lead_taken" in line and job in line for line in self.log().splitlines())


def batch(host: str, first: int, n: int, base: float) -> bytes:
    """Records first..first+n-1: a metric each (value = its sequence
    number) and a log event every 10th."""
    records: list[dict[str, Any]] = []
    for seq in range(first, first + n):
        if seq % 10 == 0:
            records.append({"kind": "event", "type": "log", "ts": base + seq, "line": f"#{seq}"})
        else:
            records.append(
                {"kind": "metric", "name": "m", "labels": {"k": str(seq % 7)},
                 "value": float(seq), "ts": base + seq * 0.01, "type": "gauge"}
            )  # fmt: skip
    body = protocol.encode_batch(host, STREAM, first, records, "0.1.0", time.time(), 1.0)
    return protocol.compress(body, "zstd")


def test_two_hubs_on_one_postgres_store_every_record_once_and_alert_once(tmp_path, pg_server):
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    dsn = pg_server.database()
    a, b = Hub(tmp_path, "a", dsn), Hub(tmp_path, "b", dsn)
    try:
        a.start()
        wait_for(lambda: a.leads("liveness"), 30, "hub a leading the liveness job")
        b.start()
        base = time.time() - 3600

        def fired() -> list[tuple[str, dict[str, Any]]]:
            return [
                (h.dir.name, x)
                for h in (a, b)
                for x in h.notifications()
                if x.get("rule") == "HostSilent"
            ]

        # db-01 speaks once, then falls silent: HostSilent, raised by a alone
        assert b.post(batch("db-01", 1, 5, base), "db-01")[0] == 200
        wait_for(lambda: fired() or None, 60, "HostSilent for db-01")

        sent = 0  # the highest sequence number web-01 has had acknowledged
        n = 50

        def send(hub: Hub, first: int, count: int = n) -> None:
            nonlocal sent
            status, answer = hub.post(batch("web-01", first, count, base), "web-01")
            assert status == 200, (status, hub.log()[-3000:])
            assert answer["last_seq"] >= first + count - 1
            sent = max(sent, answer["last_seq"])

        # alternate batch by batch; replay each other batch to the other hub
        # and an overlapping one (half old, half new) to the first
        first = 1
        for i in range(20):
            one, other = (a, b) if i % 2 == 0 else (b, a)
            send(one, first)
            if i % 2:
                send(other, first)  # a replay after a lost reply, at the other hub
            send(other, first + n // 2)  # overlaps: only its new half is stored
            first += n + n // 2

        # the same batch to both hubs at the same instant: one stores it
        gate = threading.Barrier(2)
        answers: list[tuple[int, dict[str, Any]]] = []

        def race(hub: Hub, body: bytes) -> None:
            gate.wait()
            answers.append(hub.post(body, "web-01"))

        for _ in range(5):
            body = batch("web-01", first, n, base)
            threads = [threading.Thread(target=race, args=(h, body)) for h in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            first += n
        assert len(answers) == 10 and all(s == 200 for s, _ in answers), answers
        sent = max(sent, first - 1)

        # a big batch to hub a, which is killed with SIGKILL while it is on it
        big = batch("web-01", first, 5000, base)
        started = threading.Event()
        outcome: list[tuple[int, dict[str, Any]]] = []

        def doomed() -> None:
            started.set()
            outcome.append(a.post(big, "web-01"))

        sender = threading.Thread(target=doomed)
        sender.start()
        started.wait(10)
        a.kill()
        sender.join(60)
        # whether a committed it or not, the sender replays it to b
        status, answer = b.post(big, "web-01")
        assert status == 200 and answer["last_seq"] == first + 4999
        first += 5000
        # a's death hands the liveness job to b: before a is back, or a
        # restarted a could take it again first (a race CI lost once)
        wait_for(lambda: b.leads("liveness"), 60, "hub b taking over the liveness job")
        a.start()  # back, on the same store
        send(a, first - 2500, 2600)  # half of the big batch again, then new records
        first += 100
        for i in range(6):
            send((a, b)[i % 2], first)
            first += n
        last = first - 1

        # every record once: counted in the database itself...
        with pg_server.connect(dsn.split("dbname=")[1]) as conn:
            metrics = conn.execute(
                "SELECT count(*), count(DISTINCT value), min(value), max(value) FROM metrics"
                " WHERE host = 'web-01'"
            ).fetchone()
            events = conn.execute(
                "SELECT count(*), count(DISTINCT body) FROM events WHERE host = 'web-01'"
                " AND kind = 'log'"
            ).fetchone()
        kept = [seq for seq in range(1, last + 1) if seq % 10]
        assert metrics == (len(kept), len(kept), 1.0, float(kept[-1]))
        assert events == (last // 10, last // 10)
        # ...and the hubs agree on the fleet, and read every point once
        hosts_a, hosts_b = a.get("/v1/hosts"), b.get("/v1/hosts")
        assert hosts_a == hosts_b
        [web] = [h for h in hosts_a["hosts"] if h["id"] == "web-01"]
        assert [s["last_seq"] for s in web["streams"]] == [last]
        assert [s["lost"] for s in web["streams"]] == [0]

        # b, leading the liveness job since a's death, neither raised
        # HostSilent again nor forgot it: db-01 comes back, b resolves it
        assert a.post(batch("db-01", 6, 5, base), "db-01")[0] == 200
        wait_for(
            lambda: any(x.get("state") == "resolved" for _, x in fired()) or None,
            60,
            "HostSilent resolved by the hub that took over",
        )
        assert [(name, x["host"], x["state"]) for name, x in fired()] == [
            ("a", "db-01", "firing"),
            ("b", "db-01", "resolved"),
        ]
        assert [x for x in a.get("/v1/alerts")["alerts"] if x["name"] == "HostSilent"] == []

        # the password in dsn_file is never written to a log
        for hub in (a, b):
            assert PASSWORD not in hub.log()
    finally:
        for hub in (a, b):
            hub.stop()
    assert os.path.exists(tmp_path / "secret")
