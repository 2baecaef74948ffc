"""The local endpoint and the one-shot commands, as an operator uses them."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, http_get, wait_http
from tests.e2e.harness import vigil as run

# What `vigil once --json` must show on any Linux host (DESIGN.md, issue #2).
EXPECTED = {
    "cpu_usage_percent",
    "cpu_mode_percent",
    "cpus_online",
    "load_average",
    "load_average_per_cpu",
    "memory_total_bytes",
    "memory_available_bytes",
    "memory_used_bytes",
    "memory_cached_bytes",
    "memory_buffers_bytes",
    "memory_used_percent",
    "swap_total_bytes",
    "swap_used_percent",
    "disk_used_percent",
    "disk_free_bytes",
    "disk_inodes_used_percent",
    "disk_reads_per_second",
    "disk_written_bytes_per_second",
    "disk_busy_percent",
    "network_receive_bytes_total",
    "network_transmit_bytes_per_second",
    "network_receive_drops_total",
    "system_uptime_seconds",
    "system_boot_time_seconds",
    "system_processes",
    "system_open_files",
}


@pytest.fixture
def no_config(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n')
    return str(path)


def test_once_json_prints_one_record_per_line_with_the_host_metrics(no_config):
    result = run("once", "--json", "--config", no_config, "--window", "300ms")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for r in records:
        assert set(r) >= {"kind", "name", "labels", "value", "ts"}
        assert r["kind"] == "metric" and isinstance(r["labels"], dict)
        assert isinstance(r["value"], (int, float)) and r["ts"] > 1.6e9
    names = {r["name"] for r in records}
    assert names >= EXPECTED, EXPECTED - names
    cpu_all = [
        r for r in records if r["name"] == "cpu_usage_percent" and r["labels"]["cpu"] == "all"
    ]
    assert len(cpu_all) == 1 and 0 <= cpu_all[0]["value"] <= 100
    root = [r for r in records if r["name"] == "disk_used_percent" and r["labels"]["mount"] == "/"]
    assert root, "the root file system is reported"
    assert not any(r["labels"].get("fstype") in ("tmpfs", "proc", "sysfs") for r in records)


def test_once_table_is_readable(no_config):
    result = run("once", "--config", no_config, "--window", "100ms")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["METRIC", "LABELS", "VALUE"]
    memory = next(line for line in lines if line.startswith("memory_total_bytes"))
    assert memory.endswith("GiB") or memory.endswith("MiB")
    assert any(line.startswith("cpu_usage_percent") and line.endswith("%") for line in lines)


def test_metrics_endpoint_is_valid_prometheus_text_and_status_answers(tmp_path):
    port = free_port()
    agent = Agent(tmp_path, agent_config(tmp_path, port=port))
    try:
        agent.notify.wait("READY=1")
        # rates need a second run of their collector
        wait_for(
            lambda: "disk_reads_per_second" in wait_http(f"http://127.0.0.1:{port}/metrics"),
            what="rates",
        )
        code, headers, text = http_get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        for name in EXPECTED | {
            "vigil_agent_cpu_seconds_total",
            "vigil_collector_duration_seconds",
        }:
            assert f"\n# TYPE {name} " in text, name
        assert "# TYPE network_receive_bytes_total counter" in text
        assert 'vigil_agent_info{version="0.1.0"} 1' in text

        if shutil.which("promtool") is None:
            pytest.skip(
                "promtool (Debian package prometheus) is not installed; `make test` installs it"
            )
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert lint.stdout == lint.stderr == ""

        body = json.loads(wait_http(f"http://127.0.0.1:{port}/status"))
        assert body["version"] == "0.1.0" and body["pid"] == agent.proc.pid
        assert {c["name"] for c in body["collectors"]} >= {"cpu", "disk", "network", "self"}

        shown = run("status", "--config", str(agent.config_path))
        assert shown.returncode == 0, shown.stderr
        assert f"(pid {agent.proc.pid})" in shown.stdout
        assert any(
            line.startswith("diskio ") and " ok " in line for line in shown.stdout.splitlines()
        )
        raw = run("status", "--json", "--config", str(agent.config_path))
        assert json.loads(raw.stdout)["host_id"] == body["host_id"]
    finally:
        assert agent.stop() == 0


def test_status_without_endpoint_or_agent(tmp_path, no_config):
    result = run("status", "--config", no_config)
    assert result.returncode == 2 and "api.listen is not set" in result.stderr
    path = tmp_path / "a.toml"
    path.write_text(f'[api]\nlisten = "127.0.0.1:{free_port()}"\n')
    result = run("status", "--config", str(path))
    assert result.returncode == 1 and "no agent answering" in result.stderr


def test_endpoint_port_taken_keeps_collecting(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        agent = Agent(tmp_path, agent_config(tmp_path, port=port))
        try:
            agent.notify.wait("READY=1")
            failed = wait_for(lambda: agent.events("api_listen_failed"), what="listen failure")
            assert failed[0]["listen"] == f"127.0.0.1:{port}"
            assert agent.proc.poll() is None
        finally:
            assert agent.stop() == 0
