"""The link to the hub cut and restored, for real: the hub runs in its own
network namespace behind a veth pair, and the test takes the link down
(packets vanish: no refusal, no reset, only timeouts), then up again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import (
    VIGIL,
    Agent,
    agent_config,
    free_port,
    hub_token,
    wait_exit,
    wait_http,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2 (CI runs as root)",
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def hub_in_netns(tmp_path):
    tag = f"{os.getpid() % 10000}"
    ns, host_if, ns_if = f"vigil-t{tag}", f"vgh{tag}", f"vgn{tag}"
    subnet = 10 + os.getpid() % 200  # our own namespace's private addresses
    host_ip, hub_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    ip("netns", "add", ns)
    proc = None
    log = open(tmp_path / "hub.log", "ab")  # noqa: SIM115 - closed below
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{hub_ip}/30", "dev", ns_if)
        ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        port = free_port()
        (tmp_path / "read.token").write_text("read-token-for-tests\n")
        config = tmp_path / "hub.toml"
        config.write_text(
            f'[hub]\nlisten = "{hub_ip}:{port}"\ndata_dir = "{tmp_path / "hub"}"\n'
            f'read_token_file = "{tmp_path / "read.token"}"\n'
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *VIGIL, "hub", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://{hub_ip}:{port}"
        wait_http(url + "/healthz")
        yield {"url": url, "token": hub_token(config, "edge-7"), "link": host_if}
    finally:
        if proc is not None:
            proc.terminate()
            wait_exit(proc)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        log.close()


def hub_stream(url):
    req = urllib.request.Request(
        url + "/v1/hosts", headers={"Authorization": "Bearer read-token-for-tests"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        hosts = json.load(resp)["hosts"]
    return hosts[0]["streams"][0] if hosts else None


def test_link_cut_and_restored_loses_nothing(tmp_path, hub_in_netns):
    hub = hub_in_netns
    api = free_port()
    config = agent_config(
        tmp_path,
        f'host_id = "edge-7"\n[hub]\nurl = "{hub["url"]}"\ntoken = "{hub["token"]}"\n'
        'timeout = "1s"\nmax_backoff = "1s"\n[buffer]\nflush_interval = "200ms"\n',
        port=api,
    )
    agent = Agent(tmp_path, config)
    try:
        agent.notify.wait("READY=1")
        wait_for(lambda: hub_stream(hub["url"]), what="delivery over the veth link")

        def shipper():
            return json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]

        ip("link", "set", hub["link"], "down")
        cut = time.time()
        wait_for(
            lambda: shipper()["retries"] >= 2 and "unreachable" in (shipper()["last_error"] or ""),
            timeout=30,
            what="sends timing out on the cut link",
        )
        restored = time.time()
        ip("link", "set", hub["link"], "up")
        wait_for(
            lambda: shipper()["last_error"] is None and shipper()["buffer_records"] < 100,
            timeout=60,
            what="the backlog delivered after the link came back",
        )
        stream = hub_stream(hub["url"])
        assert stream["lost"] == 0
        assert stream["last_seq"] >= shipper()["acked_seq"]
        req = urllib.request.Request(
            hub["url"] + "/v1/metrics?host=edge-7&name=memory_total_bytes",
            headers={"Authorization": "Bearer read-token-for-tests"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            stamps = [ts for ts, _ in json.load(resp)["series"][0]["points"]]
        assert any(
            cut < ts < restored for ts in stamps
        )  # collected during the cut, delivered after
        assert len(stamps) == len(set(stamps))
    finally:
        assert agent.stop() == 0
