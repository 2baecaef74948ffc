"""Every metric the agent and the hub expose passes Prometheus' own linter,
`promtool check metrics`, with every feature configured at once: host
metrics, checks of every type (https with a certificate, so the expiry
metric exists), a tailed log with the default detectors, the default
alert rules, notifiers, the shipper pushing to a real hub, and the local
endpoint. Renamed metrics come back under their old names only with
`[agent] legacy_metric_names = true`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.collectors.checks.certs import make_certs
from tests.collectors.checks.nginx import run_nginx
from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, http_get, vigil, wait_http
from tests.e2e.test_hub_ingest import HubProcess

CHECK_DUMMY = Path("/usr/lib/nagios/plugins/check_dummy")


def lint(text: str) -> str:
    """promtool's complaints about `text`: empty when it passes."""
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


def every_feature(tmp: Path, nginx, ca: Path, hub: HubProcess, api: int, legacy: bool) -> str:
    log = tmp / "app.log"
    log.write_text(
        "Nov 28 10:00:00 h sshd[1]: Failed password for root from 10.0.0.9 port 22\n"
        "2026-11-28 10:00:01 ERROR database connection failed\n"
    )
    access = tmp / "access.log"
    access.write_text(
        'www.example:443 ::1 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "c"'
        " 0.004 0.003\nnot an access line\n"
    )
    https = nginx.https_url("valid")
    return agent_config(
        tmp,
        f'host_id = "lint-1"\nlegacy_metric_names = {str(legacy).lower()}\n'
        f'[hub]\nurl = "http://127.0.0.1:{hub.port}"\ntoken = "{hub.token("lint-1")}"\n'
        '[buffer]\nflush_interval = "200ms"\n'
        f'[[logs]]\npaths = ["{log}"]\nstart_at = "beginning"\n'
        f'[[logs]]\npaths = ["{access}"]\nstart_at = "beginning"\nformat = "nginx_combined"\n'
        f'[[notifiers]]\nname = "ledger"\ntype = "file"\npath = "{tmp / "alerts.jsonl"}"\n'
        f'[[checks]]\nname = "site"\ntype = "http"\nurl = "{https}"\nca_file = "{ca}"\n'
        'interval = "1s"\n'
        f'[[checks]]\nname = "web"\ntype = "http"\nurl = "{nginx.url("/ok")}"\ninterval = "1s"\n'
        f'[[checks]]\nname = "port"\ntype = "tcp"\naddress = "127.0.0.1:{nginx.http_port}"\n'
        'interval = "1s"\n'
        f'[[checks]]\nname = "cert"\ntype = "tls"\n'
        f'address = "127.0.0.1:{nginx.https_ports["valid"]}"\nserver_name = "localhost"\n'
        f'ca_file = "{ca}"\ninterval = "1s"\n'
        '[[checks]]\nname = "resolver"\ntype = "dns"\nquery = "localhost"\ninterval = "1s"\n'
        f'[[checks]]\nname = "plugin"\ntype = "command"\n'
        f'command = ["{CHECK_DUMMY}", "0", "fine|load=0.5;1;2"]\ninterval = "1s"\n',
        interval="1s",
        port=api,
    )


@pytest.mark.parametrize("legacy", [False, True], ids=["default", "legacy_names"])
def test_every_metric_passes_promtool_with_every_feature_on(tmp_path, legacy):
    for program in ("promtool", "/usr/sbin/nginx", str(CHECK_DUMMY)):
        if not shutil.which(program):
            pytest.skip(f"{program} is not installed (make test-deps installs it)")
    (tmp_path / "certs").mkdir()
    certs = make_certs(tmp_path / "certs")
    (tmp_path / "nginx").mkdir()
    (tmp_path / "hubside").mkdir()
    (tmp_path / "agent").mkdir()
    with run_nginx(tmp_path / "nginx", certs) as nginx:
        hub = HubProcess(tmp_path / "hubside")
        api = free_port()
        config = every_feature(tmp_path / "agent", nginx, certs.ca, hub, api, legacy)
        agent = Agent(tmp_path / "agent", config)
        try:
            assert agent.notify is not None
            agent.notify.wait("READY=1")
            url = f"http://127.0.0.1:{api}/metrics"
            wanted = (
                "check_certificate_expiry_seconds{",
                'check_latency_seconds{check="site"',
                "check_perfdata{",
                "log_matches_total{",
                'http_request_duration_seconds{file="',
                "log_lines_unparsed_total{",
                "vigil_shipper_sent_records_total",
                "vigil_alert_evaluations_total",
            )

            missing: list[str] = []

            def complete() -> str | None:
                text = http_get(url)[2]
                missing[:] = [w for w in wanted if w not in text]
                return None if missing else text

            try:
                text = wait_for(complete, 30, "every feature's metrics")
            except pytest.fail.Exception:
                pytest.fail(f"never exposed: {missing}")
            assert "# TYPE check_latency_seconds summary" in text
            assert "# TYPE http_request_duration_seconds summary" in text
            assert ("check_certificate_expiry_days{" in text) == legacy
            problems = lint(text)
            if legacy:  # the old name is not in base units: the switch is for one release
                assert problems and all("days" in line for line in problems.splitlines())
            else:
                assert problems == ""

            # the hub re-exports the agent's series with a host label
            def at_hub() -> str | None:
                text = wait_http(hub.url + "/metrics")
                return text if 'check_latency_seconds{check="site"' in text else None

            hub_text = wait_for(at_hub, 30, "the checks' series at the hub")
            assert "# TYPE check_latency_seconds summary" in hub_text
            if not legacy:
                assert lint(hub_text) == ""
        finally:
            assert agent.stop() == 0
            hub.stop()


def test_a_rule_on_a_renamed_metric_says_so_unless_the_switch_is_on(tmp_path):
    rule = '[[alerts]]\nname = "Cert"\nexpr = "check_certificate_expiry_days < 14"\n'
    config = tmp_path / "agent.toml"
    config.write_text(rule)
    result = vigil("check-config", "--config", str(config))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"vigil: {config}: alerts[0].expr: ")
    assert "renamed check_certificate_expiry_seconds (seconds, not days)" in line
    assert "legacy_metric_names = true" in line
    config.write_text(f"[agent]\nlegacy_metric_names = true\n{rule}")
    result = vigil("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
