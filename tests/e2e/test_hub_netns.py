"""Issue 15, item 3: two real hubs on one real PostgreSQL, and the first
hub's network link cut mid-stream. The first hub runs in a network
namespace behind a veth pair (it reaches PostgreSQL, and the agent
reaches it, over that link); the second on loopback. A real `vigil run`
agent with `[hub] urls = [first, second]` sends to the first; the test
takes the link down (`ip link set ... down`: the first hub keeps running,
its packets vanish, only timeouts), the agent moves on to the second, and
the link comes back. Once the agent has stopped with its buffer drained,
every record it made is in PostgreSQL exactly once: the rows stored for
the host equal the stream's mark, the buffer's acked sequence number (from
`vigil buffer inspect`), and no record is there twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.auth import host_token
from tests import pgserver
from tests.conftest import wait_for
from tests.e2e.harness import VIGIL, Agent, agent_config, free_port, vigil, wait_http
from tests.e2e.test_hub_postgres import SECRET, Hub

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network namespaces need root and iproute2 (`ip`); CI runs as root",
    ),
]

HOST = "edge-9"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Link:
    """A namespace and a veth pair, unique to this run: the root end
    `outer_ip`, the namespace's end `inner_ip` (a /30 of 10.200.x.0)."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns, self.outer, self.inner = f"vgnet{tag}", f"vgo{tag}", f"vgi{tag}"
        third = os.getpid() % 250
        self.outer_ip, self.inner_ip = f"10.200.{third}.1", f"10.200.{third}.2"
        self.net = f"10.200.{third}.0/30"

    def up(self) -> None:
        ip("netns", "add", self.ns)
        ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        ip("link", "set", self.inner, "netns", self.ns)
        ip("addr", "add", f"{self.outer_ip}/30", "dev", self.outer)
        ip("link", "set", self.outer, "up")
        self.inside("ip", "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
        self.inside("ip", "link", "set", self.inner, "up")
        self.inside("ip", "link", "set", "lo", "up")

    def inside(self, *args: str) -> None:
        ip("netns", "exec", self.ns, *args)

    def cut(self, down: bool) -> None:
        """The hub's end of the link down (the cut) or up again."""
        self.inside("ip", "link", "set", self.inner, "down" if down else "up")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)


class NsHub(Hub):
    """A hub of tests/e2e/test_hub_postgres.py run inside the namespace,
    listening on the namespace's address."""

    def __init__(self, tmp: Path, name: str, dsn: str, link: Link) -> None:
        super().__init__(tmp, name, dsn)
        self.link = link
        self.url = f"http://{link.inner_ip}:{self.port}"
        (self.dir / "read.token").write_text("read-token-for-tests\n")  # not on loopback
        self.config.write_text(
            self.config.read_text().replace(
                f'listen = "127.0.0.1:{self.port}"',
                f'listen = "{link.inner_ip}:{self.port}"\n'
                f'read_token_file = "{self.dir / "read.token"}"',
            )
        )

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.link.ns, *VIGIL, "hub", "run",
                 "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_http(self.url + "/healthz", timeout=30)


@pytest.fixture
def link() -> Iterator[Link]:
    if why := pgserver.missing():
        pytest.skip(why)
    net = Link()
    try:
        net.up()
        yield net
    finally:
        net.remove()


@pytest.fixture
def server(link: Link) -> Iterator[pgserver.PostgresServer]:
    """A PostgreSQL of this test's own, on loopback and on the root end of the link."""
    pg = pgserver.PostgresServer(also=link.outer_ip, also_net=link.net)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


def no_silence(hub: Hub) -> Hub:
    """No HostSilent after the agent stops: its host's rows are the agent's alone."""
    hub.config.write_text(
        hub.config.read_text().replace('silent_after = "3s"', 'silent_after = "1h"')
    )
    return hub


def test_the_first_hubs_link_cut_mid_stream_delivery_goes_on_through_the_second(
    tmp_path: Path, link: Link, server: pgserver.PostgresServer
) -> None:
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    dsn = server.database()
    first = no_silence(NsHub(tmp_path, "first", dsn.replace("127.0.0.1", link.outer_ip), link))
    second = no_silence(Hub(tmp_path, "second", dsn))
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    api = free_port()
    config = agent_config(
        agent_dir,
        f'host_id = "{HOST}"\n[hub]\nurls = ["{first.url}", "{second.url}"]\n'
        f'token = "{host_token(HOST, SECRET)}"\ntimeout = "2s"\nmax_backoff = "500ms"\n'
        'failback_after = "1h"\n[buffer]\nflush_interval = "200ms"\n',
        port=api,
    )
    db = server.connect(dsn.split("dbname=")[1])

    def mark() -> int:
        row = db.execute("SELECT max(last_seq) FROM streams WHERE host = %s", (HOST,)).fetchone()
        return int(row[0] or 0)

    def status() -> dict[str, Any]:
        return dict(json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"])

    agent = None
    try:
        first.start()
        second.start()
        agent = Agent(agent_dir, config)
        assert agent.notify is not None
        agent.notify.wait("READY=1")
        wait_for(lambda: mark() > 50, 30, "the agent's records stored through the first hub")
        assert status()["hub"] == first.url

        link.cut(True)  # mid-stream: the agent flushes every 200 ms
        cut_at = mark()
        wait_for(lambda: status()["hub"] == second.url, 60, "the agent moving to the second hub")
        wait_for(lambda: mark() > cut_at + 100, 120, "delivery going on through the second hub")
        assert first.proc is not None and first.proc.poll() is None  # cut, not killed
        link.cut(False)
        shipper = wait_for(
            lambda: (st := status())["last_error"] is None and st["lag_seconds"] < 5 and st,
            60,
            "the backlog delivered",
        )
        assert shipper["failovers"] >= 1 and shipper["dead_letter_batches"] == 0
        assert agent.stop() == 0  # graceful: it pushes what it holds before it exits
        shown = vigil("buffer", "inspect", "--config", str(agent.config_path))
        assert shown.returncode == 0, shown.stderr
        acked = int(shown.stdout.split("acked")[1].split()[0])
        assert "waiting    0 records" in shown.stdout, shown.stdout

        [(streams, lost, last_seq)] = db.execute(
            "SELECT count(*), sum(lost), max(last_seq) FROM streams WHERE host = %s", (HOST,)
        ).fetchall()
        assert (streams, lost, last_seq) == (1, 0, acked)
        metrics, distinct_metrics = db.execute(
            "SELECT count(*), count(DISTINCT (name, labels, ts)) FROM metrics WHERE host = %s",
            (HOST,),
        ).fetchone()
        events, distinct_events = db.execute(
            "SELECT count(*), count(DISTINCT (ts, kind, body)) FROM events WHERE host = %s",
            (HOST,),
        ).fetchone()
        assert metrics == distinct_metrics and events == distinct_events  # none twice
        assert metrics + events == acked  # none missing: every record 1..acked, once
        sent = shipper["sent_records"]
        print(
            f"link cut at seq {cut_at}: {acked} records, {metrics} metric rows + {events} events,"
            f" failovers {shipper['failovers']}, sent_records {sent} when drained"
        )
        for hub in (first, second):
            assert "Traceback" not in hub.log()
    finally:
        if agent is not None and agent.proc.poll() is None:
            agent.stop()
        db.close()
        first.stop()
        second.stop()
