"""Issue 18: scraping local Prometheus endpoints and node_exporter's
textfile directory, through the real agent and hub.

- A real node_exporter (Debian's prometheus-node-exporter) scraped through
  a recording proxy: after the agent stops, the hub holds, for a selection
  of series, exactly the values node_exporter served at the last scrape.
- A textfile directory written by the test, then one file broken on
  purpose: the good files still arrive, the broken one is reported.
- A cardinality bomb: an endpoint serving 50,000 series is cut at
  max_series, and the rest are counted, not sent."""

from __future__ import annotations

import shutil
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port
from tests.e2e.test_hub_ingest import HubProcess

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


class Recorder:
    """An HTTP server in front of `upstream` (or serving `body()` itself)
    that keeps every body it served, in order."""

    def __init__(self, upstream: str | None = None, body=None) -> None:
        self.bodies: list[bytes] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if upstream is not None:
                    with urllib.request.urlopen(upstream, timeout=5) as answer:
                        data = answer.read()
                else:
                    data = body()
                recorder.bodies.append(data)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def values_in(body: bytes, name: str) -> dict[frozenset, float]:
    """`name`'s samples in an exposition body, by label set (test side: the
    prometheus_client parser, as the agent uses)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                out[frozenset(sample.labels.items())] = sample.value
    return out


def hub_config(tmp: Path, hub: HubProcess, extra: str) -> str:
    return agent_config(
        tmp,
        f'host_id = "scraper-1"\n[hub]\nurl = "http://127.0.0.1:{hub.port}"\n'
        f'token = "{hub.token("scraper-1")}"\n[buffer]\nflush_interval = "200ms"\n{extra}',
        interval="1s",
    )


def at_hub(hub: HubProcess, name: str) -> dict[frozenset, float]:
    series = hub.get(f"/v1/metrics?host=scraper-1&name={name}&since=0&limit=10000")["series"]
    return {frozenset(s["labels"].items()): s["points"][-1][1] for s in series if s["points"]}


@pytest.mark.skipif(
    NODE_EXPORTER is None,
    reason="prometheus-node-exporter is not installed: make test installs it",
)
def test_the_hub_holds_what_node_exporter_served_at_the_last_scrape(tmp_path):
    port = free_port()
    exporter = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), 15, "node_exporter")
    proxy = Recorder(upstream=f"http://127.0.0.1:{port}/metrics")
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    agent = Agent(
        tmp_path,
        hub_config(
            tmp_path,
            hub,
            f'[[scrape]]\nname = "node"\nurl = "{proxy.url}"\ninterval = "1s"\n'
            'labels = { role = "edge" }\n',
        ),
    )
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: len(proxy.bodies) >= 3, 30, "three scrapes")
        assert agent.stop() == 0  # drains: the last scrape reaches the hub
        last = proxy.bodies[-1]
        selection = (
            "node_cpu_seconds_total",
            "node_memory_MemAvailable_bytes",
            "node_network_receive_bytes_total",
            "node_load1",
            "go_goroutines",
        )
        for name in selection:
            served = values_in(last, name)
            assert served, name
            stored = wait_for(lambda n=name: at_hub(hub, n) or None, 15, name)
            want = {
                frozenset({*labels, ("scrape", "node"), ("role", "edge")}): value
                for labels, value in served.items()
            }
            assert stored == want, name
        up = at_hub(hub, "scrape_up")
        assert up == {frozenset({("scrape", "node")}): 1.0}
        types = hub.get("/v1/metrics?host=scraper-1&name=node_cpu_seconds_total&limit=1")
        assert types["series"][0].get("type", "counter") == "counter"
    finally:
        if agent.proc.poll() is None:  # not stopped above: a failure on the way
            agent.stop()
        hub.stop()
        proxy.close()
        exporter.terminate()
        exporter.wait(15)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_a_broken_textfile_is_reported_and_the_good_ones_still_arrive(tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir()

    def write(name: str, text: str) -> None:  # atomically, as node_exporter asks
        (directory / f".{name}.tmp").write_text(text)
        (directory / f".{name}.tmp").rename(directory / name)

    write("backup.prom", '# TYPE backup_ok gauge\nbackup_ok{db="main"} 1\n')
    write("jobs.prom", "# TYPE jobs_done_total counter\njobs_done_total 41\n")
    # a name the agent reports itself: dropped, the agent's own series alone
    write("own.prom", "# TYPE memory_used_percent gauge\nmemory_used_percent 123\n")
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    agent = Agent(
        tmp_path,
        hub_config(tmp_path, hub, f'[textfile]\ndirectory = "{directory}"\ninterval = "1s"\n'),
    )
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: at_hub(hub, "jobs_done_total"), 30, "the textfiles")
        write("backup.prom", '# TYPE backup_ok gauge\nbackup_ok{db="main" 1\n')  # broken
        write("jobs.prom", "# TYPE jobs_done_total counter\njobs_done_total 42\n")

        def reported() -> bool:
            errors = at_hub(hub, "textfile_scrape_error")
            return errors.get(frozenset({("file", str(directory / "backup.prom"))})) == 1.0

        wait_for(reported, 30, "the broken file reported")
        assert (
            at_hub(hub, "textfile_scrape_error")[
                frozenset({("file", str(directory / "jobs.prom"))})
            ]
            == 0.0
        )
        wait_for(lambda: at_hub(hub, "jobs_done_total") == {frozenset(): 42.0}, 30, "42")
        query = "/v1/metrics?host=scraper-1&name=memory_used_percent&since=0&limit=10000"
        points = [v for s in hub.get(query)["series"] for _, v in s["points"]]
        assert points and 123.0 not in points  # the agent's own, only
        invalid = at_hub(hub, "textfile_samples_invalid_total")
        assert invalid and max(invalid.values()) >= 1
    finally:
        assert agent.stop() == 0
        hub.stop()


def test_a_cardinality_bomb_is_cut_at_max_series_and_counted(tmp_path):
    series = 50_000
    bomb = Recorder(body=lambda: "".join(f'bomb{{id="{i}"}} {i}\n' for i in range(series)).encode())
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    agent = Agent(
        tmp_path,
        hub_config(
            tmp_path,
            hub,
            f'[[scrape]]\nname = "bomb"\nurl = "{bomb.url}"\ninterval = "1s"\nmax_series = 1000\n',
        ),
    )
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: at_hub(hub, "scrape_series_dropped_total"), 30, "the drop counted")
        assert agent.stop() == 0
        scrapes = len(bomb.bodies)
        dropped = at_hub(hub, "scrape_series_dropped_total")[frozenset({("scrape", "bomb")})]
        assert dropped == (series - 1000) * scrapes
        assert len(at_hub(hub, "bomb")) == 1000
    finally:
        if agent.proc.poll() is None:  # not stopped above: a failure on the way
            agent.stop()
        hub.stop()
        bomb.close()


def test_a_target_that_hangs_is_down_and_one_the_hub_would_refuse_costs_nothing(tmp_path):
    """The second read: a scrape that timed out left scrape_up at 1; a
    series with a 201-character name made the hub refuse every batch, the
    host's own metrics with it."""
    import time as clock

    def drip() -> bytes:
        clock.sleep(5)  # past the 1 s timeout
        return b"late 1\n"

    slow = Recorder(body=drip)
    odd = Recorder(body=lambda: ("x" * 201 + " 1\nfine 2\n").encode())
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    agent = Agent(
        tmp_path,
        hub_config(
            tmp_path,
            hub,
            f'[[scrape]]\nname = "slow"\nurl = "{slow.url}"\ninterval = "2s"\ntimeout = "1s"\n'
            f'[[scrape]]\nname = "odd"\nurl = "{odd.url}"\ninterval = "1s"\n',
        ),
    )
    try:
        agent.notify.wait("READY=1")
        down = frozenset({("scrape", "slow")})
        wait_for(lambda: at_hub(hub, "scrape_up").get(down) == 0.0, 30, "the hung target down")
        wait_for(lambda: at_hub(hub, "fine"), 30, "the odd target's good series")
        invalid = at_hub(hub, "scrape_samples_invalid_total")[frozenset({("scrape", "odd")})]
        assert invalid >= 1
        assert at_hub(hub, "cpus_online"), "the host's own metrics still arrive"
        assert list((tmp_path / "state").glob("deadletter/*")) == []
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        hub.stop()
        slow.close()
        odd.close()
