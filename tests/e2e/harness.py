"""Start real `vigil` processes and talk to them the way systemd and an
operator do: a NOTIFY_SOCKET datagram socket, signals, the local endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import wait_for

VIGIL = [sys.executable, "-m", "agent"]


def agent_config(
    tmp: Path, extra: str = "", interval: str = "200ms", port: int | None = None
) -> str:
    """A config for a test agent: its own state dir, a short interval, and
    the local endpoint on `port` when given."""
    api = f'[api]\nlisten = "127.0.0.1:{port}"\n' if port else ""
    return (
        f'[agent]\nstate_dir = "{tmp / "state"}"\ninterval = "{interval}"\n'
        f'stop_timeout = "5s"\n{extra}\n{api}'
    )


def vigil(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `vigil` command as an operator would; output captured as text."""
    return subprocess.run([*VIGIL, *args], capture_output=True, text=True, timeout=timeout)


def hub_token(config: Path, host: str) -> str:
    """What `vigil hub token HOST` prints for the hub configured in `config`."""
    result = vigil("hub", "token", host, "--config", str(config))
    result.check_returncode()
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NotifySocket:
    """What systemd listens on: a unix datagram socket; we keep every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def wait(self, needle: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        def found() -> list[str] | None:
            hits = [m for m in self.drain() if needle in m.split("\n")]
            return hits if len(hits) >= count else None

        return wait_for(found, timeout, f"{count} x {needle!r} on NOTIFY_SOCKET")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)  # the next agent's socket can take the path


class Agent:
    def __init__(
        self, tmp: Path, config: str, env: dict[str, str] | None = None, notify: bool = True
    ) -> None:
        self.tmp = tmp
        self.config_path = tmp / "agent.toml"
        self.config_path.write_text(config)
        self.notify = NotifySocket(tmp / "notify.sock") if notify else None
        full_env = {**os.environ, **(env or {})}
        if self.notify:
            full_env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.log_path = tmp / "agent.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*VIGIL, "run", "--config", str(self.config_path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "(not json)", "line": line})
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.log.close()
            if self.notify:
                self.notify.drain()  # keep what arrived up to the exit, then close
                self.notify.close()
        return code


def http_get(url: str) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, dict(resp.headers), resp.read().decode()


def wait_http(url: str, timeout: float = 15.0) -> str:
    def attempt() -> str | None:
        try:
            return http_get(url)[2]
        except OSError:
            return None

    return wait_for(attempt, timeout, url)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError("process did not exit")
        time.sleep(0.02)
    return int(proc.returncode)
