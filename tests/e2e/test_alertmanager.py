"""The alertmanager notifier against a real Prometheus Alertmanager (Debian's
prometheus-alertmanager) on loopback: a firing alert shows up active with its
labels, stays active while firing (re-posted before resolve_timeout), and is
gone once the resolution arrives; one sent while Alertmanager is down arrives
when it comes up.

API v2 leaves resolved alerts out of GET /api/v2/alerts whatever the
filters, so "resolved" is seen as "no longer listed"."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.alert import Alert
from agent.notifiers.alertmanager import AlertmanagerConfig
from agent.notifiers.base import Notifier
from agent.notifiers.routing import build_notifiers
from tests.conftest import wait_for
from tests.e2e.harness import free_port

BINARY = "/usr/bin/prometheus-alertmanager"
PACKAGE = "prometheus-alertmanager"
CONFIG = "route:\n  receiver: default\nreceivers:\n  - name: default\n"


def ensure_alertmanager() -> str:
    """The binary; installed from Debian when missing and we may (root, apt-get)."""
    if os.path.exists(BINARY):
        return BINARY
    why = "not root" if os.geteuid() != 0 else "no apt-get"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        steps = [
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
        ]
        try:
            for step in steps:
                subprocess.run(step, env=env, check=True, capture_output=True, timeout=500)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            why = f"apt-get failed: {exc}"
    if not os.path.exists(BINARY):
        pytest.skip(f"{BINARY} is missing and {PACKAGE} could not be installed ({why})")
    return BINARY


class Alertmanager:
    def __init__(self, binary: str, tmp: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        (tmp / "alertmanager.yml").write_text(CONFIG)
        self.log = tmp / "alertmanager.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp / 'alertmanager.yml'}",
                    f"--storage.path={tmp / 'data'}",
                    "--cluster.listen-address=",  # no clustering
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ready, timeout=30, what="Alertmanager to be ready")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"Alertmanager exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts filtered to one alertname."""
        query = urllib.parse.quote(f'alertname="{alertname}"')
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?filter={query}", timeout=5) as r:
            found: list[dict[str, Any]] = json.load(r)
        return found

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def am_binary() -> str:
    return ensure_alertmanager()


@pytest.fixture
def alertmanager(am_binary: str, tmp_path: Path) -> Iterator[Alertmanager]:
    (tmp_path / "am").mkdir()
    am = Alertmanager(am_binary, tmp_path / "am", free_port())
    yield am
    am.stop()


def alert(state: str, starts_at: float, ends_at: float | None = None) -> Alert:
    return Alert(
        rule="DiskAlmostFull",
        state=state,  # type: ignore[arg-type]
        severity="critical",
        labels={"alertname": "DiskAlmostFull", "host": "edge-7", "mountpoint": "/var"},
        summary="/var is 97% full on edge-7",
        value=97.2,
        starts_at=starts_at,
        ends_at=ends_at,
        host="edge-7",
        fingerprint="5e1f0c0ffee",
        annotations={"runbook": "https://runbooks.example/disk"},
    )


def notifier(url: str, state_dir: Path) -> Notifier[Any]:
    config = AlertmanagerConfig(
        name="am", type="alertmanager", url=url, resend_interval=0.5, max_backoff=0.5
    )
    return build_notifiers([config], state_dir, "edge-7")["am"]


async def until(condition: Any, what: str, timeout: float = 20.0) -> Any:
    return await asyncio.to_thread(wait_for, condition, timeout, what)


@pytest.mark.timeout(600)  # may install Alertmanager first
def test_firing_then_resolved_in_a_real_alertmanager(alertmanager, tmp_path):
    am = alertmanager
    started = time.time() - 60

    def listed() -> dict[str, Any] | None:
        found = am.alerts("DiskAlmostFull")
        return found[0] if found and found[0]["status"]["state"] == "active" else None

    async def main() -> None:
        n = notifier(am.url, tmp_path / "state")
        await n.start()
        try:
            await steps(n)
        finally:
            await n.stop()

    async def steps(n: Notifier[Any]) -> None:
        await n.send(alert("firing", started))
        first = await until(listed, "the alert active in Alertmanager")
        assert first["labels"] == {
            "alertname": "DiskAlmostFull",
            "severity": "critical",
            "host": "edge-7",
            "mountpoint": "/var",
        }
        assert first["annotations"] == {
            "summary": "/var is 97% full on edge-7",
            "runbook": "https://runbooks.example/disk",
        }
        assert first["startsAt"].startswith(
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
        )
        # still firing: re-posted, so Alertmanager pushes its own endsAt on
        await until(
            lambda: (a := listed()) and a["endsAt"] > first["endsAt"],
            "a re-post moving endsAt forward",
        )
        await n.send(alert("resolved", started, time.time()))
        await until(lambda: am.alerts("DiskAlmostFull") == [], "the alert resolved")
        await until(lambda: n.status()["queued"] == 0, "the resolution acknowledged")
        assert n.status()["sent"] == 2 and n.status()["dropped"] == 0

    asyncio.run(main())


@pytest.mark.timeout(600)
def test_alert_sent_while_alertmanager_is_down_arrives_when_it_is_up(am_binary, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def while_down() -> None:
        n = notifier(url, tmp_path / "state")
        await n.start()
        await n.send(alert("firing", time.time()))
        await until(lambda: n.status()["failed"] >= 1, "a failed attempt")
        assert n.status()["queued"] == 1
        await n.stop()

    async def up() -> None:
        n = notifier(url, tmp_path / "state")
        await n.start()
        await until(lambda: n.status()["queued"] == 0, "the queued alert delivered")
        await n.stop()

    asyncio.run(while_down())
    (tmp_path / "am").mkdir()
    am = Alertmanager(am_binary, tmp_path / "am", port)
    try:
        asyncio.run(up())
        found = wait_for(lambda: am.alerts("DiskAlmostFull"), what="the alert in Alertmanager")
        assert found[0]["labels"]["host"] == "edge-7"
    finally:
        am.stop()
