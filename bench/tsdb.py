"""Real time-series databases on loopback, for the forwarding tests and
bench: Debian's `victoria-metrics` and `prometheus` (with its remote write
receiver), each in a temporary directory on a free port."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import free_port

VICTORIA = "/usr/bin/victoria-metrics"
PROMETHEUS = "/usr/bin/prometheus"


class TSDB:
    """A server process that can be stopped and started again on the same
    port and data directory (an outage)."""

    write_path = ""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def write_url(self) -> str:
        return self.url + self.write_path

    def start(self, timeout: float = 30.0) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data.parent / f"{self.data.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()[0]} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.ready_url(), timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.command()[0]} did not become ready")
            time.sleep(0.1)

    def ready_url(self) -> str:
        return self.url + "/health"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def get(self, path: str, **params: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=60) as resp:
            return json.loads(resp.read())


class VictoriaMetrics(TSDB):
    write_path = "/api/v1/write"

    def command(self) -> list[str]:
        return [
            VICTORIA,
            f"-storageDataPath={self.data}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",  # the tests' timestamps, and 2100's
            "-search.latencyOffset=0s",  # a sample is readable at once
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, Any]]:
        """Every raw sample of the matching series, duplicates included
        (`/api/v1/export`): [{"metric": {...}, "values": [...], "timestamps": [...]}]."""
        self.flush()
        url = (
            self.url
            + "/api/v1/export?"
            + urllib.parse.urlencode({"match[]": match, "start": "0", "end": "4200000000"})
        )
        with urllib.request.urlopen(url, timeout=120) as resp:
            return [_export_line(line) for line in resp.read().splitlines() if line.strip()]

    def flush(self) -> None:
        """Recent writes made searchable (the in-memory parts)."""
        with urllib.request.urlopen(self.url + "/internal/force_flush", timeout=60):
            pass


def _export_line(line: bytes) -> dict[str, Any]:
    """One line of /api/v1/export: JSON, but with bare Inf, -Inf and NaN values."""
    head, sep, tail = line.decode().partition('"values":')
    tail = re.sub(r"(?<=[\[,])([-+]?Inf|NaN)(?=[\],])", r'"\1"', tail)
    out: dict[str, Any] = json.loads(head + sep + tail)
    out["values"] = [
        float(v.replace("Inf", "inf")) if isinstance(v, str) else v for v in out["values"]
    ]
    return out


class Prometheus(TSDB):
    write_path = "/api/v1/write"

    def command(self) -> list[str]:
        config = self.data.parent / f"{self.data.name}.yml"
        config.write_text("global:\n  scrape_interval: 1h\n")
        return [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--storage.tsdb.retention.time=100y",
            "--log.level=error",
        ]

    def ready_url(self) -> str:
        return self.url + "/-/ready"

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        answer = self.get("/api/v1/query", **params)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]
