"""State written by the layout before issue 12 still loads: a real agent and
a real hub of today run on a copy of tests/fixtures/state_v1/, the state
directory (buffer, log checkpoint, detector state, alert state, SLA state,
a webhook's queued item) and hub data directory that the code of commit
2200661 wrote (make.py there regenerates them; manifest.json says what the
old code read back from them).

What the user would see if a format had changed: records lost or sent
twice, log lines read again or skipped, an alert announced again, check
counters back at zero, a notification never delivered.

The fixture lives elsewhere than where it was written. Log files are known
by absolute path and by (device, inode), so the copy's checkpoint is given
the copy's paths and its log file's device and inode, as if the files had
never moved; nothing else in it is touched.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp import web

from tests.conftest import wait_for
from tests.e2e.harness import Agent, free_port, vigil
from tests.e2e.test_hub_ingest import HubProcess
from tests.e2e.test_logs import agent_metric

FIXTURE = Path(__file__).parents[1] / "fixtures" / "state_v1"
MANIFEST = json.loads((FIXTURE / "manifest.json").read_text())
HOST = MANIFEST["host"]
REMOTE = next(iter(MANIFEST["auth_failures"]))
# appended after the restart: a known error template, a novel one, one more failed login
NEW_LINES = (
    "2026-01-06T09:00:00Z shop[311]: ERROR payment failed order=3 reason=declined\n"
    "2026-01-06T09:00:01Z shop[311]: ERROR cache shard 7 unreachable after 3 tries\n"
    f"Jan  6 09:00:02 web-01 sshd[5001]: Failed password for root from {REMOTE} port 40000 ssh2\n"
)


def relocate(value: Any, old: str, new: str, inodes: dict[str, tuple[int, int]]) -> Any:
    """`value` with the root `old` replaced by `new` in every string, and the
    device and inode of each file state whose path is in `inodes` set to it."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [relocate(v, old, new, inodes) for v in value]
    if isinstance(value, dict):
        out = {
            relocate(k, old, new, inodes): relocate(v, old, new, inodes) for k, v in value.items()
        }
        if {"path", "dev", "ino"} <= out.keys() and out["path"] in inodes:
            out["dev"], out["ino"] = inodes[out["path"]]
        return out
    return value


class Receiver:
    """A webhook receiver: a real aiohttp server on loopback keeping each POST's JSON."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.bodies: list[Any] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def hook(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        started.set()
        self.loop.run_forever()
        self.loop.close()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def copy_fixture(tmp: Path, hub_port: int, hook_url: str, api: int) -> tuple[Path, str]:
    """The fixture under `tmp`, its configs and log checkpoint rewritten to
    the new place and ports; returns the root and the agent's config text."""
    root = tmp / "v1"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("make.py", "manifest.json"))
    old = MANIFEST["root"]
    hub_toml = root / "hub.toml"
    listen = MANIFEST["hub_url"].removeprefix("http://")
    # The fixture's records age; the hub must keep them, whenever this runs.
    hub_toml.write_text(
        hub_toml.read_text().replace(old, str(root)).replace(listen, f"127.0.0.1:{hub_port}")
        + 'retention_raw = "0s"\nretention_events = "0s"\n'
    )
    agent_toml = (
        (root / "agent.toml")
        .read_text()
        .replace(old, str(root))
        .replace(MANIFEST["hub_url"], f"http://127.0.0.1:{hub_port}")
        .replace(MANIFEST["webhook_url"], hook_url)
        .replace(MANIFEST["api_listen"], f"127.0.0.1:{api}")
    )
    log = root / "app.log"
    st = log.stat()
    for part in (root / "state" / "logs").iterdir():
        saved = msgpack.unpackb(part.read_bytes(), raw=False, strict_map_key=False)
        moved = relocate(saved, old, str(root), {str(log): (st.st_dev, st.st_ino)})
        part.write_bytes(msgpack.packb(moved, use_bin_type=True))
    return root, agent_toml


def check_runs_at_hub(hub: HubProcess) -> list[float]:
    """check_runs_total of the check "probe" at the hub, in time order."""
    series = hub.get(f"/v1/metrics?host={HOST}&name=check_runs_total")["series"]
    points = [p for s in series if s["labels"].get("check") == "probe" for p in s["points"]]
    return [v for _, v in sorted(points)]


def hub_events(hub: HubProcess, kind: str) -> list[dict[str, Any]]:
    return hub.get_all(f"/v1/events?host={HOST}&kind={kind}", "events")


def log_lines_at_hub(hub: HubProcess) -> list[str]:
    return [e["fields"]["line"] for e in hub_events(hub, "log") if "line" in e.get("fields", {})]


def test_state_of_the_previous_layout_loads(tmp_path: Path, receiver: Receiver) -> None:
    hub_port, api = free_port(), free_port()
    root, cfg = copy_fixture(tmp_path, hub_port, receiver.url, api)
    config = root / "agent.toml"
    config.write_text(cfg)
    buf = MANIFEST["buffer"]

    # the buffer as the old code wrote it: intact, its ledger and stream read
    result = vigil("buffer", "verify", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    shown = vigil("buffer", "inspect", "--config", str(config)).stdout
    assert buf["stream"] in shown
    assert f"acked      {buf['acked']}" in shown
    assert f"waiting    {buf['waiting']['records']} records" in shown

    hub = HubProcess(root, hub_port)  # the old hub's data directory, its secret and store
    [before] = hub.get("/v1/hosts")["hosts"]
    assert before["streams"] == [{"stream": buf["stream"], "last_seq": buf["acked"], "lost": 0}]
    agent = Agent(root, cfg)
    try:
        agent.notify.wait("READY=1")

        # the webhook's queued item, written before the restart, is delivered as queued
        wait_for(lambda: receiver.bodies, timeout=20, what="the queued webhook item")
        assert receiver.bodies == MANIFEST["webhook_queued"]

        with open(root / "app.log", "a") as fh:
            fh.write(NEW_LINES)
        runs = MANIFEST["check_runs"]

        def settled() -> bool:
            lines = log_lines_at_hub(hub)
            new = any("order=3" in x for x in lines) and any("shard" in x for x in lines)
            return new and max(check_runs_at_hub(hub), default=0) >= runs + 3

        wait_for(settled, timeout=30, what="the new lines and three more check runs")

        # the buffer's waiting records arrived under the old stream, numbered as
        # written, with no gap; new records carry on the same numbering
        [host] = hub.get("/v1/hosts")["hosts"]
        [stream] = host["streams"]
        assert stream["stream"] == buf["stream"] and stream["lost"] == 0
        assert stream["last_seq"] > buf["waiting"]["last"]

        # log offsets: every line at the hub once, none read twice, none skipped
        lines = log_lines_at_hub(hub)
        for order in (1, 2, 3):
            assert sum(f"payment failed order={order} " in x for x in lines) == 1, lines
        log = str(root / "app.log")
        lines_read = MANIFEST["log"]["lines"] + NEW_LINES.count("\n")
        assert agent_metric(api, "log_lines_read_total", file=log) == lines_read
        assert agent_metric(api, "log_bytes_reread_total", file=log) == 0
        assert agent_metric(api, "log_bytes_missed_total", file=log) == 0
        matches = MANIFEST["rule_matches"]["payment_failed"] + 1
        assert agent_metric(api, "log_matches_total", rule="payment_failed", file=log) == matches

        # detector state: the failed logins count on, the known template is not new
        failures = MANIFEST["auth_failures"][REMOTE] + 1
        assert agent_metric(api, "auth_failures_total", remote=REMOTE) == failures
        known, novel = NEW_LINES.splitlines()[:2]
        events = [e["fields"] for e in hub_events(hub, "log")]
        [rule_event] = [f for f in events if f.get("line") == known]
        assert rule_event["rule"] == "payment_failed"
        assert rule_event["new_signature"] is False  # the old state knew its template
        new_errors = [f["line"] for f in events if f.get("detector") == "new_error"]
        assert new_errors == [novel]  # while a template it never saw is new

        # SLA state: the run counter carries on from the saved runs, no reset, no gap
        values = check_runs_at_hub(hub)
        assert values == [float(n) for n in range(int(values[0]), int(values[0]) + len(values))]
        assert runs + 1 in values and values[-1] >= runs + 3
        assert agent_metric(api, "check_failures_total", check="probe") == 0

        # alert state: still firing since the old start, announced nowhere again
        shown = vigil("alerts", "--config", str(config), timeout=30).stdout
        assert MANIFEST["alert"]["rule"] in shown and "FIRING" in shown
        ledger = [json.loads(x) for x in (root / "alerts.jsonl").read_text().splitlines()]
        assert [(a["state"], a["starts_at"]) for a in ledger] == [
            ("firing", MANIFEST["alert"]["starts_at"])
        ]
        assert len(receiver.bodies) == 1
        # its history at the hub: the two transitions of the old run (both at
        # its start: for = "0s"), none since
        transitions = sorted((e["fields"]["state"], e["ts"]) for e in hub_events(hub, "alert"))
        started = MANIFEST["alert"]["starts_at"]
        assert transitions == [("firing", started), ("pending", started)]
    finally:
        code = agent.stop()
        hub.stop()
    assert code == 0
    result = vigil("buffer", "verify", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
