"""Issue 18: access-log metrics through the real agent. A generated nginx
log of 10,000 requests with a known seed: the agent's counters are exact,
across a kill -9 in the middle of reading too, and each latency quantile is
within 1 % of the exact one; then a real nginx writing its access log
with $request_time while a client makes 1,000 requests: the agent counts
what the client saw."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, http_get

SAMPLE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$", re.M)


def samples(port: int, name: str) -> dict[frozenset, float]:
    """`name`'s samples on the agent's /metrics, by label set."""
    text = http_get(f"http://127.0.0.1:{port}/metrics")[2]
    out = {}
    for metric, labels, value in SAMPLE.findall(text):
        if metric == name:
            pairs = re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', labels)
            out[frozenset(pairs)] = float(value)
    return out


def by(found: dict[frozenset, float], label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in found.items()}


def generated(path: Path | None, n: int, seed: int) -> tuple[dict[str, int], int, list]:
    """n requests' lines, written to `path` (else returned in the third
    place); their counts by status class and their bytes."""
    rng = random.Random(seed)
    classes: dict[str, int] = {}
    total, durations, lines = 0, [], []
    for _ in range(n):
        status = rng.choices([200, 201, 302, 404, 500, 502], [60, 10, 5, 15, 6, 4])[0]
        size = rng.randrange(0, 100_000)
        seconds = rng.randrange(1, 3000) / 1000  # nginx prints milliseconds
        lines.append(
            f'192.0.2.{rng.randrange(256)} - - [29/Nov/2026:07:00:00 +0000] "GET /x HTTP/1.1"'
            f' {status} {size} "-" "gen/1.0" {seconds:.3f} {seconds:.3f}\n'
        )
        classes[f"{status // 100}xx"] = classes.get(f"{status // 100}xx", 0) + 1
        total += size
        durations.append(seconds)
    if path is None:
        return classes, total, lines
    path.write_text("".join(lines))
    return classes, total, durations


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def access_config(tmp_path: Path, port: int, log: Path) -> str:
    return agent_config(
        tmp_path,
        f'[[logs]]\npaths = ["{log}"]\nformat = "nginx_combined"\nstart_at = "beginning"\n',
        interval="500ms",
        port=port,
    )


def test_a_live_log_counts_exactly_across_a_kill_while_it_is_written(tmp_path):
    """200,000 requests appended while the agent reads them, and a kill -9
    in the middle; the counters ride the commit of the file offsets, so
    the restarted agent counts each request once."""
    log = tmp_path / "access.log"
    classes, total, lines = generated(None, 200_000, seed=18)
    log.write_text("")

    def write() -> None:
        with open(log, "a") as out:
            for start in range(0, len(lines), 2000):
                out.write("".join(lines[start : start + 2000]))
                out.flush()
                time.sleep(0.05)  # 5 s in all: the kill comes well within it

    port = free_port()
    agent = Agent(tmp_path, access_config(tmp_path, port, log))
    writer = threading.Thread(target=write)
    try:
        agent.notify.wait("READY=1")
        writer.start()
        wait_for(lambda: samples(port, "http_requests_total"), 60, "the first requests")
        assert writer.is_alive(), "the kill must come while the log is written"
        agent.proc.send_signal(signal.SIGKILL)
        agent.stop()
        agent = Agent(tmp_path, access_config(tmp_path, port, log))
        agent.notify.wait("READY=1")

        def counted() -> dict[str, float] | None:
            got = by(samples(port, "http_requests_total"), "status_class")
            return got if sum(got.values()) >= 200_000 and not writer.is_alive() else None

        got = wait_for(counted, 120, "all 200,000 requests")
        assert got == {c: float(n) for c, n in classes.items()}
        assert list(samples(port, "http_request_bytes_total").values()) == [float(total)]
        assert samples(port, "log_lines_unparsed_total") == {}
    finally:
        writer.join(60)
        assert agent.stop() == 0


def test_quantiles_of_a_whole_file_are_within_one_percent(tmp_path):
    log = tmp_path / "access.log"
    _, _, durations = generated(log, 10_000, seed=19)
    port = free_port()
    agent = Agent(tmp_path, access_config(tmp_path, port, log))
    try:
        agent.notify.wait("READY=1")

        def counted() -> dict[str, float] | None:
            got = by(samples(port, "http_request_duration_seconds"), "quantile")
            requests = sum(samples(port, "http_requests_total").values())
            return got if requests >= 10_000 and got else None

        quantiles = wait_for(counted, 60, "all 10,000 requests")
        assert set(quantiles) == {"0.5", "0.9", "0.95", "0.99"}
        for q, got_q in quantiles.items():
            exact = nearest_rank(durations, float(q))
            assert abs(got_q - exact) <= 0.01 * exact, (q, got_q, exact)
    finally:
        assert agent.stop() == 0


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format timed '$remote_addr - $remote_user [$time_local] "$request" '
                     '$status $body_bytes_sent "$http_referer" "$http_user_agent" '
                     '$request_time $upstream_response_time';
    access_log {tmp}/access.log timed;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = / {{ return 200 "hello\\n"; }}
        location = /fail {{ return 503 "down\\n"; }}
        location = /moved {{ return 302 /; }}
    }}
}}
"""


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed: make test installs nginx-light"
)
def test_a_real_nginx_access_log_counts_what_the_client_saw(tmp_path):
    nginx_port, api = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, port=nginx_port))
    (tmp_path / "access.log").touch()
    server = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)])
    agent = Agent(tmp_path, access_config(tmp_path, api, tmp_path / "access.log"))
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: _status(f"http://127.0.0.1:{nginx_port}/") == 200, 15, "nginx")
        rng = random.Random(1000)
        seen: dict[str, int] = {"2xx": 1}  # the wait's request
        for _ in range(1000):
            path = rng.choices(["/", "/fail", "/missing", "/moved"], [80, 5, 10, 5])[0]
            status = _status(f"http://127.0.0.1:{nginx_port}{path}")
            seen[f"{status // 100}xx"] = seen.get(f"{status // 100}xx", 0) + 1

        def counted() -> dict[str, float] | None:
            got = by(samples(api, "http_requests_total"), "status_class")
            return got if sum(got.values()) >= 1001 else None

        assert wait_for(counted, 30, "1,001 requests") == {c: float(n) for c, n in seen.items()}
        assert samples(api, "log_lines_unparsed_total") == {}
        assert samples(api, "http_request_duration_seconds")
    finally:
        server.send_signal(signal.SIGQUIT)
        server.wait(15)
        assert agent.stop() == 0


def _status(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # the 302 is the answer
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


CASCADE_RULE = """
[alerting]
min_coverage = 0.0
evaluate_every = "250ms"
[[alerts]]
name = "ErrorsWithACheckDown"
expr = '''
  (rate(http_requests_total{status_class="5xx"}[5m]) / rate(http_requests_total[5m]) > 0.05)
  and on() (min_over_time(check_up[5m]) == 0)'''
severity = "critical"
summary = "{value:.0%} of {file} failed while a check was down"
notify = ["ledger"]
[[checks]]
name = "health"
type = "http"
url = "http://127.0.0.1:{port}/health"
interval = "1s"
timeout = "1s"
retries = 0
[[notifiers]]
name = "ledger"
type = "file"
path = "{ledger}"
"""


@pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed: make test installs nginx-light"
)
def test_the_5xx_share_and_the_cascade_rule_on_a_real_nginx(tmp_path):
    """The default HTTPErrorRatioHigh reads the share of 5xx answers a real
    nginx logged; the playbook's cascade rule (that share high and a check
    down) fires only once the health check fails too: nginx stops."""
    nginx_port, api = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    # /health is not logged: the log holds the client's requests only
    health = 'location = /health { access_log off; return 200 "ok\\n"; }'
    conf.write_text(
        NGINX_CONF.format(tmp=tmp_path, port=nginx_port).replace(
            "location = /moved", f"{health}\n        location = /moved"
        )
    )
    (tmp_path / "access.log").touch()
    ledger = tmp_path / "alerts.jsonl"
    extra = CASCADE_RULE.replace("{port}", str(nginx_port)).replace("{ledger}", str(ledger))
    cfg = access_config(tmp_path, api, tmp_path / "access.log") + extra
    server = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)])
    agent = Agent(tmp_path, cfg)
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: _status(f"http://127.0.0.1:{nginx_port}/health") == 200, 15, "nginx")
        rng = random.Random(18)
        seen: dict[str, int] = {}
        for _ in range(300):  # about a fifth of the answers are 503s
            path = rng.choices(["/", "/fail"], [80, 20])[0]
            status = _status(f"http://127.0.0.1:{nginx_port}{path}")
            seen[f"{status // 100}xx"] = seen.get(f"{status // 100}xx", 0) + 1

        exact = seen["5xx"] / (seen["2xx"] + seen["5xx"])

        def share():
            url = f"http://127.0.0.1:{api}/alerts/test?rule=HTTPErrorRatioHigh"
            found = json.loads(http_get(url)[2])
            rows = [s for s in found["series"] if s["value"] is not None and s["condition"]]
            # each class's rate has its own first sample: as the counters
            # stand still their spans grow alike and the share nears the logged one
            close = rows and rows[0]["value"] == pytest.approx(exact, rel=0.05)
            return (found, rows[0]) if close else None

        found, row = wait_for(share, 60, "the default 5xx-share rule at the logged share")
        assert "sum without (status_class)" in found["read_as"]
        assert row["labels"] == {"file": str(tmp_path / "access.log")}
        url = f"http://127.0.0.1:{api}/alerts/test?rule=ErrorsWithACheckDown"
        cascade = json.loads(http_get(url)[2])
        assert cascade["series"] == [] and not ledger.exists()  # every check up: no cascade

        server.send_signal(signal.SIGQUIT)  # the service goes down: its check fails
        server.wait(15)
        fired = wait_for(
            lambda: ledger.exists() and [json.loads(x) for x in ledger.read_text().splitlines()],
            30,
            "the cascade alert",
        )
        assert fired[0]["rule"] == "ErrorsWithACheckDown" and fired[0]["state"] == "firing"
        assert fired[0]["labels"]["file"] == str(tmp_path / "access.log")
        assert fired[0]["summary"].endswith("failed while a check was down")
    finally:
        server.send_signal(signal.SIGQUIT)
        server.wait(15)
        assert agent.stop() == 0
