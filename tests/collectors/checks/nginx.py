"""A real nginx for the probes to check, with its own config, pid, logs and
temp paths under a test directory, listening on free loopback ports.

Plain HTTP serves /ok (200, a known body), /missing (404) and /moved (301
to /ok); one HTTPS server per test certificate kind (certs.py here)
answers 200 on every path but /empty (204, no body). nginx runs in the
foreground as one process (`daemon off; master_process off`, so no `user`
is needed as root), and stopping it is one signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.collectors.checks.certs import KINDS, Certs
from tests.conftest import wait_for

NGINX = "/usr/sbin/nginx"
OK_BODY = "hello from nginx"
TLS_BODY = "hello over tls"

_CONFIG = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    default_type text/plain;
    absolute_redirect off;
    server {{
        listen 127.0.0.1:{http_port};
        location = /ok {{ return 200 "{ok_body}\\n"; }}
        location = /missing {{ return 404 "nothing here\\n"; }}
        location = /moved {{ return 301 /ok; }}
    }}
{https_servers}
}}
"""

_HTTPS_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "{body}\\n"; }}
        location = /empty {{ return 204; }}
    }}
"""


@dataclass(frozen=True)
class Nginx:
    http_port: int
    https_ports: dict[str, int]  # certificate kind -> port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def https_url(self, kind: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.https_ports[kind]}/"

    def address(self, kind: str) -> str:
        return f"127.0.0.1:{self.https_ports[kind]}"

    async def disconnected(self, timeout: float = 5.0) -> None:
        """Wait until this process holds no connection to nginx. A closed TLS
        connection finishes its shutdown (close_notify both ways) in the
        background; a test loop that ends before that leaves a socket
        unclosed, which fails the test with a ResourceWarning."""
        ports = {self.http_port, *self.https_ports.values()}
        deadline = time.monotonic() + timeout
        me = psutil.Process()
        while any(c.raddr and c.raddr.port in ports for c in me.net_connections("tcp")):
            if time.monotonic() > deadline:
                pytest.fail(f"connections to nginx still open after {timeout}s")
            await asyncio.sleep(0.01)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held together while choosing)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def run_nginx(directory: Path, certs: Certs) -> Iterator[Nginx]:
    if not shutil.which(NGINX):
        pytest.skip(f"{NGINX} is not installed (make test-deps)")
    ports = free_ports(1 + len(KINDS))
    server = Nginx(http_port=ports[0], https_ports=dict(zip(KINDS, ports[1:])))
    (directory / "tmp").mkdir()
    https = "".join(
        _HTTPS_SERVER.format(port=port, cert=certs.cert(kind), key=certs.key(kind), body=TLS_BODY)
        for kind, port in server.https_ports.items()
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        _CONFIG.format(
            dir=directory, http_port=server.http_port, ok_body=OK_BODY, https_servers=https
        )
    )
    # -e: the error log before the config is read (the default is /var/log).
    proc = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"nginx exited with {proc.returncode}: {err.decode()}")
            return all(accepts(p) for p in ports)

        wait_for(ready, 10.0, "nginx to listen")
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
