"""HTTPS between agent and hub with certificates made by openssl: the
agent trusts the hub through `[hub] ca_file`, and refuses it without."""

from __future__ import annotations

import json
import shutil
import subprocess

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

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vigil test CA",
        cwd=d,
    )
    openssl("req", *ec, "-keyout", "hub.key", "-out", "hub.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "hub.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "hub.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    return d


def test_agent_pushes_over_https_trusting_the_configured_ca(tmp_path, certificates):
    port = free_port()
    hub_config = tmp_path / "hub.toml"
    hub_config.write_text(
        f'[hub]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{tmp_path / "hub"}"\n'
        f'tls_cert_file = "{certificates / "hub.pem"}"\n'
        f'tls_key_file = "{certificates / "hub.key"}"\n'
    )
    hub = subprocess.Popen(
        [*VIGIL, "hub", "run", "--config", str(hub_config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    token = hub_token(hub_config, "edge-7")
    url = f"https://127.0.0.1:{port}"

    def run_agent(where, ca_line):
        where.mkdir()
        api = free_port()
        cfg = agent_config(
            where,
            f'host_id = "edge-7"\n[hub]\nurl = "{url}"\ntoken = "{token}"\n{ca_line}'
            'max_backoff = "500ms"\n[buffer]\nflush_interval = "200ms"\n',
            port=api,
        )
        return Agent(where, cfg), api

    def shipper(api):
        return json.loads(wait_http(f"http://127.0.0.1:{api}/status"))["shipper"]

    try:
        trusting, api = run_agent(tmp_path / "a", f'ca_file = "{certificates / "ca.pem"}"\n')
        try:
            trusting.notify.wait("READY=1")
            wait_for(lambda: shipper(api)["sent_records"] > 0, what="delivery over https")
        finally:
            assert trusting.stop() == 0

        untrusting, api = run_agent(tmp_path / "b", "")  # system CAs only
        try:
            untrusting.notify.wait("READY=1")
            error = wait_for(lambda: shipper(api)["last_error"], what="a refused certificate")
            assert "certificate" in error.lower()
            assert shipper(api)["sent_records"] == 0
        finally:
            assert untrusting.stop() == 0
    finally:
        hub.terminate()
        wait_exit(hub)
