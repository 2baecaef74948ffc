"""`vigil hub run` as a real process: ingest is durable, idempotent and
refuses bad input with the right 4xx, and the read API shows the result."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import msgpack
import pytest

from agent.core import protocol
from hub.auth import host_token
from tests.e2e.harness import VIGIL, free_port, hub_token, vigil, wait_exit, wait_http

GOLDEN = Path(__file__).parents[1] / "fixtures" / "protocol"
STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"


class HubProcess:
    def __init__(
        self,
        tmp: Path,
        port: int | None = None,
        max_body: str = "1MiB",
        extra: str = "",
        retention: str = "0s",  # the golden batch is from 2026-01-01: keep it
    ) -> None:
        self.port = port or free_port()
        self.config = tmp / "hub.toml"
        self.config.write_text(
            f'[hub]\nlisten = "127.0.0.1:{self.port}"\ndata_dir = "{tmp / "hub"}"\n'
            f'max_body = "{max_body}"\nmax_decompressed = "4MiB"\n'
            f'retention_raw = "{retention}"\nretention_events = "{retention}"\n{extra}'
        )
        self.log = open(tmp / "hub.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*VIGIL, "hub", "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/healthz")

    def token(self, host: str) -> str:
        return hub_token(self.config, host)

    def post(self, body: bytes, token: str | None, encoding: str = "zstd") -> tuple[int, dict]:
        headers = {"Content-Encoding": encoding, "Content-Type": "application/msgpack"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + "/v1/ingest", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def get(self, path: str) -> dict:
        return json.loads(wait_http(self.url + path))

    def get_all(self, path: str, key: str) -> list:
        """Every item of a paged read (`series` or `events`), following `next`."""
        items, cursor = [], ""
        while True:
            page = self.get(path + ("&" if "?" in path else "?") + cursor)
            items += page[key]
            if page["next"] is None:
                return items
            cursor = "cursor=" + page["next"]

    def stop(self) -> int:
        self.proc.terminate()
        code = wait_exit(self.proc)
        self.log.close()
        return code


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


@pytest.fixture
def hub(tmp_path):
    h = HubProcess(tmp_path)
    yield h
    if h.proc.poll() is None:
        h.stop()


def batch(first: int, n: int, host: str = "web-01", encoding: str = "zstd") -> bytes:
    recs = [
        {
            "kind": "metric",
            "name": "m",
            "labels": {"i": str(first + i)},
            "value": first + i,
            "type": "gauge",
            "ts": 1767225600.0 + first + i,
        }
        for i in range(n)
    ]
    return protocol.compress(
        protocol.encode_batch(host, STREAM, first, recs, "0.1.0", 1.0), encoding
    )


def test_golden_batch_is_stored_once_and_replays_are_acknowledged(hub, tmp_path):
    token = hub.token("web-01")
    secret = (tmp_path / "hub" / "hub.secret").read_bytes().strip()
    assert token == host_token("web-01", secret)
    golden = (GOLDEN / "batch-v1.msgpack.zst").read_bytes()
    assert hub.post(golden, token) == (200, {"last_seq": 43, "stored": 3})
    assert hub.post(golden, token) == (200, {"last_seq": 43, "stored": 0})  # replay
    gz = (GOLDEN / "batch-v1.msgpack.gz").read_bytes()
    assert hub.post(gz, token, "gzip") == (200, {"last_seq": 43, "stored": 0})
    # an overlapping batch is trimmed, not refused: 42-45 stores 44 and 45
    status, body = hub.post(batch(42, 4), token)
    assert (status, body) == (200, {"last_seq": 45, "stored": 2})
    # a gap (the agent dropped 46-49) is accepted and counted
    assert hub.post(batch(50, 2, encoding="identity"), token, "identity")[1]["last_seq"] == 51

    [host] = hub.get("/v1/hosts")["hosts"]
    assert host["id"] == "web-01" and host["agent_version"] == "0.1.0"
    # lost: 1-40 (the stream's first batch started at 41) and 46-49
    assert host["streams"] == [{"stream": STREAM, "last_seq": 51, "lost": 44}]
    series = hub.get("/v1/metrics?host=web-01&name=cpu_usage_percent")["series"]
    assert series == [
        {
            "host": "web-01",
            "name": "cpu_usage_percent",
            "labels": {"cpu": "all"},
            "points": [[1767225600.0, 12.5]],
        }
    ]
    assert len(hub.get("/v1/metrics?name=m")["series"]) == 4  # 44, 45, 50, 51: once each
    [event] = hub.get("/v1/events?kind=lifecycle")["events"]
    assert event["message"] == "agent started" and event["ts"] == 1767225601.25

    # durable: after a restart the data and the high-water mark are still there
    assert hub.stop() == 0
    again = HubProcess(tmp_path)
    try:
        assert again.post(golden, token) == (200, {"last_seq": 51, "stored": 0})
        assert len(again.get("/v1/metrics?name=m")["series"]) == 4
    finally:
        assert again.stop() == 0


def test_bad_input_gets_the_right_4xx_and_the_hub_stays_up(hub):
    token = hub.token("web-01")
    good = batch(1, 2)
    mac = token.rpartition(".")[2]
    assert hub.post(good, None)[0] == 401
    assert hub.post(good, "web-01.00ff")[0] == 401  # forged
    assert hub.post(good, f"web-02.{mac}")[0] == 401  # another host's name on our MAC
    assert hub.post(good, hub.token("web-02"))[0] == 403  # genuine, but not this batch's host
    assert hub.post(b"\xc1\xc1\xc1", token, "identity")[0] == 400
    assert hub.post(protocol.compress(b"\x93\x01\x02"), token)[0] == 400  # msgpack, not a batch
    assert hub.post(protocol.compress(msgpack.packb({"v": 1}))[:-4], token)[0] == 400  # cut
    bomb = protocol.compress(b"\0" * (50 << 20))
    before = memory_kib(hub.proc.pid, "VmRSS")
    for _ in range(5):
        status, body = hub.post(bomb, token)
        assert status == 413 and "expands beyond" in body["error"]
    # the 50 MiB never materialised: the hub grew by far less than one bomb
    assert memory_kib(hub.proc.pid, "VmHWM") - before < 25 * 1024
    assert hub.post(b"x" * (2 << 20), token, "identity")[0] == 413
    assert hub.post(good, token, "br")[0] == 415
    assert hub.get("/healthz") == {"status": "ok"}
    assert hub.post(good, token) == (200, {"last_seq": 2, "stored": 2})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[hub]\nmax_body = "lots"\n', "hub.max_body"),
        ('[hub]\nlisten = "0.0.0.0:8650"\n', "hub.read_token_file"),
    ],
)
def test_hub_config_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "hub.toml"
    path.write_text(text)
    result = vigil("hub", "run", "--config", str(path), timeout=30)
    assert result.returncode == 2
    assert f"{path}: {key}:" in result.stderr


def test_concurrent_agents_are_stored_exactly_once_through_group_commits(tmp_path):
    """64 agents push at once (their batches share transactions: group
    commit), one of them over the series limit: every other batch is
    stored once, the refused one alone is answered 422, and the hub's
    /metrics counts every batch handed to the store."""
    hub = HubProcess(tmp_path, extra="max_new_series_per_batch = 50\n")
    try:
        hosts = [f"web-{i:02d}" for i in range(64)]
        secret = (tmp_path / "hub" / "hub.secret").read_bytes().strip()
        tokens = {h: host_token(h, secret) for h in [*hosts, "flood"]}  # as `vigil hub token`

        def agent(host: str) -> list[tuple[int, dict]]:
            return [hub.post(batch(first, 10, host), tokens[host]) for first in (1, 11, 21)]

        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            flood = pool.submit(hub.post, batch(1, 60, "flood"), tokens["flood"])
            answers = dict(zip(hosts, pool.map(agent, hosts), strict=True))
        assert flood.result()[0] == 422
        for host, got in answers.items():
            assert [a for a in got] == [
                (200, {"last_seq": s, "stored": 10}) for s in (10, 20, 30)
            ], host
        by_host = {h["id"]: h["streams"] for h in hub.get("/v1/hosts")["hosts"]}
        assert by_host.pop("flood") == []  # counted as refused, no stream
        assert sorted(by_host) == hosts
        assert all(s == [{"stream": STREAM, "last_seq": 30, "lost": 0}] for s in by_host.values())
        points = hub.get_all("/v1/metrics?name=m&limit=1000", "series")
        stored = sorted((s["host"], p[1]) for s in points for p in s["points"])
        assert stored == sorted((h, float(v)) for h in hosts for v in range(1, 31))
        text = wait_http(hub.url + "/metrics")
        grouped = float(re.search(r"^vigil_hub_store_group_batches_total (\S+)$", text, re.M)[1])
        commits = float(re.search(r"^vigil_hub_store_commits_total (\S+)$", text, re.M)[1])
        assert grouped == 64 * 3 + 1 and 1 <= commits <= grouped
    finally:
        assert hub.stop() == 0


def test_a_hub_killed_amid_group_commits_stores_every_batch_once(tmp_path):
    """kill -9 while 24 agents push at once (their batches in shared
    transactions), then a restart on the same data: each agent resends what
    was not acknowledged, as the shipper does, and every record is stored
    exactly once: a group is durable whole or not at all, and no batch is
    acknowledged before its group's commit."""
    hub = HubProcess(tmp_path)
    port = hub.port
    secret = (tmp_path / "hub" / "hub.secret").read_bytes().strip()
    hosts = [f"edge-{i:02d}" for i in range(24)]
    per_host, size = 40, 10
    current = [hub]
    acked: list[str] = []  # one entry per acknowledged batch

    def agent(host: str) -> int:
        token, retries = host_token(host, secret), 0
        for k in range(per_host):
            while True:  # the shipper's loop: the same batch until it is acknowledged
                try:
                    status, answer = current[0].post(batch(1 + k * size, size, host), token)
                except (OSError, http.client.HTTPException):  # the hub is down
                    status, answer = 0, {}
                if status == 200:
                    assert answer["last_seq"] == (k + 1) * size
                    acked.append(host)
                    break
                assert status in (0, 503), (status, answer)
                retries += 1
                time.sleep(0.05)
        return retries

    with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
        running = [pool.submit(agent, h) for h in hosts]
        deadline = time.monotonic() + 60
        while len(acked) < len(hosts) * per_host // 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # a quarter acknowledged: mid-stream
        hub.proc.kill()
        hub.proc.wait()
        hub.log.close()
        current[0] = HubProcess(tmp_path, port=port)
        retries = sum(f.result() for f in running)
    hub = current[0]
    try:
        assert retries > 0  # the kill did land amid the pushes
        points = hub.get_all("/v1/metrics?name=m&limit=10000", "series")
        stored = sorted((s["host"], p[1]) for s in points for p in s["points"])
        everything = [(h, float(v)) for h in hosts for v in range(1, per_host * size + 1)]
        assert stored == sorted(everything)  # none lost, none twice
    finally:
        assert hub.stop() == 0
