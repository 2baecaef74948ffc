"""One host, or a stranger, cannot break the hub for the others (issue 13,
items 3, 5, 6, 7, 8): each hostile input goes to a real `vigil hub run`,
gets a 4xx (never a 500), and a well-behaved agent, a real `vigil run`
with a non-ASCII host id, then delivers everything it holds: its buffer
empties, the hub's mark for its stream equals the agent's, nothing lost."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.core import protocol
from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, vigil
from tests.e2e.test_hub_ingest import HubProcess

STREAM = "0123456789abcdef0123456789abcdef"
GOOD_HOST = "häst-01"  # non-ASCII: its token must work


def now_event(**over: Any) -> dict[str, Any]:
    return {"kind": "event", "type": "log", "ts": time.time(), "line": "x", **over}


def raw_batch(host: str, first: int, records: list[Any], last: int | None = None) -> bytes:
    """A batch built by hand, so it can break the rules the encoder keeps.
    A "DEEP:n" string becomes n maps and arrays nested in each other: msgpack's
    packer stops at 511 levels, a hostile client does not."""
    body = {
        "v": 1,
        "host": host,
        "stream": STREAM,
        "first": first,
        "last": first + len(records) - 1 if last is None else last,
        "agent": "evil",
        "sent": time.time(),
        "records": records,
    }
    packed = msgpack.packb(body, use_bin_type=True)
    for depth in (990, 1022):
        placeholder = msgpack.packb(f"DEEP:{depth}")
        nested = b"\x81\xa1k\x91" * (depth // 2) + msgpack.packb("x")  # {"k": [ ... ]}
        packed = packed.replace(placeholder, nested)
    return protocol.compress(packed)


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(text, parse_constant=refuse)


def read(hub: HubProcess, path: str) -> Any:
    with urllib.request.urlopen(hub.url + path, timeout=30) as resp:
        return strict_json(resp.read().decode())


class GoodAgent:
    """A real agent pushing to `hub`, and how to prove it lost nothing."""

    def __init__(self, tmp: Path, hub: HubProcess) -> None:
        token = hub.token(GOOD_HOST)
        (tmp / "token").write_text(token + "\n")
        config = agent_config(tmp, f'[hub]\nurl = "{hub.url}"\ntoken_file = "{tmp / "token"}"\n')
        self.agent = Agent(tmp, config.replace("[agent]\n", f'[agent]\nhost_id = "{GOOD_HOST}"\n'))
        self.tmp, self.hub = tmp, hub

    def stream(self) -> dict[str, Any] | None:
        hosts = {h["id"]: h for h in read(self.hub, "/v1/hosts")["hosts"]}
        streams = hosts.get(GOOD_HOST, {}).get("streams", [])
        return streams[0] if streams else None

    def delivering(self) -> None:
        """The agent's stream advances at the hub (waits up to 30 s)."""
        before = (self.stream() or {}).get("last_seq", 0)
        wait_for(lambda: (self.stream() or {}).get("last_seq", 0) > before, 30, "delivery")

    def lost_nothing(self) -> None:
        """Stop it (SIGTERM pushes what it can), then: nothing waits in its
        buffer, the hub holds exactly what it acked, no gap, no dead letter."""
        assert self.agent.stop() == 0
        shown = vigil("buffer", "inspect", "--config", str(self.agent.config_path)).stdout
        fields = dict(line.split(None, 1) for line in shown.splitlines() if line[:1] != " ")
        assert fields["waiting"].startswith("0 records"), shown
        stream = self.stream()
        assert stream is not None and stream["stream"] == fields["stream"]
        assert stream["last_seq"] == int(fields["acked"]) and stream["lost"] == 0
        assert not (self.tmp / "state" / "deadletter").exists()


@pytest.fixture
def hub(tmp_path):
    (tmp_path / "hubdir").mkdir()
    h = HubProcess(tmp_path / "hubdir", max_body="8MiB")
    yield h
    h.stop()


@pytest.fixture
def good(tmp_path, hub):
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    g = GoodAgent(agent_dir, hub)
    try:
        g.delivering()
        yield g
    finally:  # a setup that failed too: the agent must not outlive the test
        if g.agent.proc.poll() is None:
            g.agent.stop()


def hub_log_has_no_traceback(hub: HubProcess) -> None:
    text = (hub.config.parent / "hub.log").read_text(errors="replace")
    assert "Traceback" not in text and '"level": "error"' not in text, text[-2000:]


def test_batches_the_store_could_not_take_get_400_and_nothing_else_stops(hub, good):
    """Item 8 (and 5's nesting): each answered 400, the hub keeps serving."""
    evil = hub.token("evil-01")
    hostile = {
        "ts 2**63": [now_event(ts=2**63)],
        "ts 2**64-1": [now_event(ts=2**64 - 1)],
        "bytes map key": [now_event(fields={b"k": 1})],
        "nested 990": [now_event(fields="DEEP:990")],
        "nested 1022": [now_event(fields="DEEP:1022")],
        "huge string": [now_event(line="é" * (2**20 + 1))],
    }
    answers = {}
    for name, records in hostile.items():
        answers[name] = hub.post(raw_batch("evil-01", 1, records), evil)[0]
    answers["first 2**63-1"] = hub.post(raw_batch("evil-01", 2**63 - 1, [now_event()]), evil)[0]
    answers["last 2**64-1"] = hub.post(
        raw_batch("evil-01", 2**64 - 1, [now_event()], last=2**64 - 1), evil
    )[0]
    assert {k: v for k, v in answers.items() if v != 400} == {}
    # a metric value beyond 64 bits is a number all the same: stored as a float
    fine = [{"kind": "metric", "name": "m", "ts": time.time(), "value": 2**64 - 1}]
    assert hub.post(raw_batch("evil-01", 1, fine), evil) == (200, {"last_seq": 1, "stored": 1})
    # the evil host's own stream is not stuck: the next batch is stored
    assert hub.post(raw_batch("evil-01", 2, [now_event()]), evil)[1]["stored"] == 1
    good.delivering()
    good.lost_nothing()
    hub_log_has_no_traceback(hub)


def test_clocks_in_2100_cannot_hold_the_first_page(hub, good):
    """Item 5: records stamped far ahead are stored at receipt, counted per host."""
    evil = hub.token("evil-01")
    y2100 = 4102444800.0
    flood = [now_event(ts=y2100, n=i) for i in range(1000)]
    assert hub.post(raw_batch("evil-01", 1, flood), evil)[0] == 200
    [evil_host] = [h for h in read(hub, "/v1/hosts")["hosts"] if h["id"] == "evil-01"]
    assert evil_host["skewed_records"] == 1000
    newest = read(hub, "/v1/events?limit=10")["events"]
    assert max(e["ts"] for e in newest) < time.time() + 5  # nothing from 2100
    # another host's later events come first again
    other = hub.token("web-02")
    assert hub.post(raw_batch("web-02", 1, [now_event(line="fresh")]), other)[0] == 200
    assert read(hub, "/v1/events?limit=1")["events"][0]["host"] == "web-02"
    good.delivering()
    good.lost_nothing()


def test_nan_and_infinity_are_served_as_strict_json(hub, good):
    """Item 6: stored, then read back as null by parsers that refuse NaN."""
    evil = hub.token("evil-01")
    ts = time.time()
    records = [
        {"kind": "metric", "name": "odd", "labels": {"v": v}, "ts": ts, "value": float(v)}
        for v in ("nan", "inf", "-inf")
    ] + [now_event(ratio=float("nan"), top=float("inf"))]
    assert hub.post(raw_batch("evil-01", 1, records), evil)[0] == 200
    series = read(hub, "/v1/metrics?host=evil-01&name=odd")["series"]
    assert sorted(s["labels"]["v"] for s in series) == ["-inf", "inf", "nan"]
    assert all(p[1] is None for s in series for p in s["points"])
    [event] = read(hub, "/v1/events?host=evil-01")["events"]
    assert event["ratio"] is None and event["top"] is None
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in event.values())
    good.lost_nothing()


def test_non_ascii_host_ids_work_and_forged_ones_get_401(hub, good):
    """Item 7: the good agent is "häst-01" (it delivered in the fixture);
    strange Authorization headers are 401, never 500, never a traceback."""
    body = raw_batch("evil-01", 1, [now_event()])
    for header in ("Bearer é.00", "Bearer häst-01.00", "Bearer \udcff.00", "Bearer .", "Bearer "):
        raw = header.encode("utf-8", "surrogateescape")
        request = urllib.request.Request(hub.url + "/v1/ingest", data=body)
        request.add_unredirected_header("Authorization", raw.decode("latin-1"))
        request.add_unredirected_header("Content-Encoding", "zstd")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == 401, header
    for bad in ("", " ", "a b", "a\nb", "a/b", "x" * 10_000):
        result = vigil("hub", "token", bad, "--config", str(hub.config))
        assert result.returncode == 2 and result.stdout == "", bad
        assert "host id" in result.stderr
    good.delivering()
    good.lost_nothing()
    hub_log_has_no_traceback(hub)


def test_one_host_cannot_grow_the_store_without_bound(tmp_path):
    """Item 3: a batch over the series limits is refused whole (422) with a
    reason; a real agent over its limit dead-letters that batch, logs the
    reason and counts it; within the limit everything is stored."""
    (tmp_path / "hubdir").mkdir()
    (tmp_path / "small").mkdir()
    hub = HubProcess(
        tmp_path / "hubdir", extra="max_series_per_host = 400\nmax_new_series_per_batch = 300\n"
    )
    try:
        evil = hub.token("evil-01")
        ts = time.time()
        many = [
            {"kind": "metric", "name": "card", "labels": {"i": str(i)}, "ts": ts, "value": 1.0}
            for i in range(301)
        ]
        status, answer = hub.post(raw_batch("evil-01", 1, many), evil)
        assert status == 422 and "max_new_series_per_batch" in answer["error"]
        assert hub.post(raw_batch("evil-01", 1, many[:300]), evil)[0] == 200
        status, answer = hub.post(raw_batch("evil-01", 301, many[200:301] + many[:0]), evil)
        assert status == 200  # 100 known series and 1 new one: 301 in all
        status, answer = hub.post(
            raw_batch("evil-01", 402, [dict(m, name="more") for m in many[:100]]), evil
        )
        assert status == 422 and "max_series_per_host" in answer["error"]
        # refusals are written down with the next write, anyone's
        fresh = [{"kind": "event", "type": "log", "ts": time.time()}]
        assert hub.post(raw_batch("web-02", 1, fresh), hub.token("web-02"))[0] == 200
        [evil_host] = [h for h in read(hub, "/v1/hosts")["hosts"] if h["id"] == "evil-01"]
        assert evil_host["refused_batches"] == 2 and evil_host["streams"][0]["last_seq"] == 401

        # a real agent whose host metrics alone exceed a tiny limit
        small = HubProcess(tmp_path / "small", extra="max_series_per_host = 5\n")
        agent_dir = tmp_path / "agent"
        agent_dir.mkdir()
        (agent_dir / "token").write_text(small.token("web-01") + "\n")
        config = agent_config(
            agent_dir, f'[hub]\nurl = "{small.url}"\ntoken_file = "{agent_dir / "token"}"\n'
        )
        agent = Agent(agent_dir, config.replace("[agent]\n", '[agent]\nhost_id = "web-01"\n'))
        try:
            dead = wait_for(lambda: agent.events("batch_dead_lettered") or None, 30, "dead letter")
            assert dead[0]["status"] == 422 and "max_series_per_host" in dead[0]["answer"]
            reasons = list((agent_dir / "state" / "deadletter").glob("*.reason"))
            assert reasons and "max_series_per_host" in reasons[0].read_text()
        finally:
            agent.stop()
            small.stop()
    finally:
        hub.stop()


def test_retention_expires_old_data(tmp_path):
    """Item 3: raw data older than retention_raw is deleted while the hub runs."""
    (tmp_path / "hubdir").mkdir()
    hub = HubProcess(tmp_path / "hubdir", retention="3s")
    try:
        token = hub.token("web-01")
        old = [
            {"kind": "metric", "name": "old", "labels": {}, "ts": time.time() - 3600, "value": 1.0}
        ]
        assert hub.post(raw_batch("web-01", 1, old), token)[1]["stored"] == 1
        assert read(hub, "/v1/metrics?name=old")["series"] != []
        wait_for(lambda: read(hub, "/v1/metrics?name=old")["series"] == [], 30, "expiry")
    finally:
        hub.stop()
