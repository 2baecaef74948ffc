"""A real PostgreSQL 15 for the tests, from Debian's `postgresql` package
(`make test-deps` installs it): initdb in a temporary directory, the server
on a free loopback port with its socket in that directory, fsync off. As
root, both run as the `postgres` system user (initdb refuses root). Each
test takes a fresh database of its own (`database()`)."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "vigil"  # the role the tests connect as (trust on loopback)


def missing() -> str | None:
    """Why no server can be started here, or None."""
    for tool in ("initdb", "postgres", "pg_ctl"):
        if not (BIN / tool).is_file():
            return f"PostgreSQL 15 is not installed ({BIN / tool}: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """`also`: another address to listen on, with trust for `also_net`
    (tests/e2e/test_hub_netns.py: a hub in a network namespace reaches the
    server over a veth pair)."""

    def __init__(self, also: str | None = None, also_net: str | None = None) -> None:
        self.also, self.also_net = also, also_net
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        subprocess.run(
            [*self.prefix, str(BIN / "initdb"), "-D", str(self.data), "-U", USER,
             "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C.UTF-8"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        if self.also_net:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.also_net} trust\n")
        listen = "127.0.0.1" + (f",{self.also}" if self.also else "")
        log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - the server's, closed by it
        self.proc = subprocess.Popen(
            [*self.prefix, str(BIN / "postgres"), "-D", str(self.data),
             "-p", str(self.port), "-h", listen, "-k", str(self.dir),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect("postgres").close()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start: " + (self.dir / "server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.1)

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={dbname}"

    def connect(self, dbname: str):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5)

    def database(self) -> str:
        """A fresh, empty database; its dsn."""
        name = f"t{next(self._names)}"
        with self.connect("postgres") as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.dsn(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # fast shutdown: sessions a test left open do not hold it up
            subprocess.run(
                [*self.prefix, str(BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast"],
                capture_output=True, timeout=60,
            )  # fmt: skip
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session, started on first use, stopped at the
    end (registered for every test in tests/conftest.py)."""
    if why := missing():
        pytest.skip(why)
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
