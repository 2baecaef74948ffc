"""What a sysadmin does to a running hub, done to a real `vigil hub run`:
check its config, reload it with SIGHUP (systemd's notify protocol
included), read why it refused a client, and find its files private."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from agent.core import protocol
from hub.auth import host_token
from hub.config import HubSection, ReportsSection
from tests.conftest import wait_for
from tests.e2e.harness import VIGIL, NotifySocket, free_port, vigil, wait_exit, wait_http

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "packaging" / "hub.example.toml"
STREAM = "5f0c9d2e8a7b4c1d9e3f2a1b0c4d5e6f"
SECRET = b"a test secret of the hub, 32 b."


class Hub:
    """`vigil hub run` with a NOTIFY_SOCKET, its config rewritable."""

    def __init__(self, tmp: Path, body: str, notify: bool = True, secret: bytes = SECRET) -> None:
        self.tmp, self.port = tmp, free_port()
        self.config = tmp / "hub.toml"
        (tmp / "secret").write_bytes(secret + b"\n")
        self.write(body)
        self.log_path = tmp / "hub.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.notify = NotifySocket(tmp / "notify.sock") if notify else None
        env = dict(os.environ)
        if self.notify:
            env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.proc = subprocess.Popen(
            [*VIGIL, "hub", "run", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/healthz")

    def write(self, body: str, port: int | None = None, retention: str = "0s") -> None:
        self.config.write_text(
            f'[hub]\nlisten = "127.0.0.1:{port or self.port}"\n'
            f'data_dir = "{self.tmp / "data"}"\nsecret_file = "{self.tmp / "secret"}"\n'
            f'retention_raw = "{retention}"\n{body}'
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == name:
                out.append(entry)
        return out

    def wait_event(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_for(lambda: (e := self.events(name)) and len(e) >= count and e, 15, name)

    def reload(self, body: str, port: int | None = None, retention: str = "0s") -> None:
        self.write(body, port, retention)
        self.proc.send_signal(signal.SIGHUP)

    def post(self, body: bytes, token: str | None, encoding: str = "zstd") -> int:
        headers = {"Content-Encoding": encoding, "Content-Type": "application/msgpack"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + "/v1/ingest", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status), json.load(resp)
        except urllib.error.HTTPError as exc:
            return int(exc.code), None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = wait_exit(self.proc)
        self.log.close()
        if self.notify:
            self.notify.close()
        return code


def batch(first: int, series: int, host: str = "web-01", ts: float | None = None) -> bytes:
    stamp = time.time() if ts is None else ts
    recs = [
        {"kind": "metric", "name": "m", "labels": {"i": str(i)}, "value": i, "ts": stamp}
        for i in range(series)
    ]
    return protocol.compress(protocol.encode_batch(host, STREAM, first, recs, "0.1.0", stamp))


TOKEN = host_token("web-01", SECRET)


# -- vigil hub check-config ----------------------------------------------------


def test_hub_check_config_exit_codes_and_one_line_per_problem(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[hub]\nlisten = "127.0.0.1:8650"\nmax_body = "1MiB"\n')
    result = vigil("hub", "check-config", "--config", str(good))
    assert (result.returncode, result.stdout.strip()) == (0, f"{good}: ok"), result.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text('[hub]\nmax_body = "lots"\nbogus = 1\n')
    result = vigil("hub", "check-config", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines  # every problem at once, one line each
    assert all(line.startswith(f"vigil: {bad}: hub.") for line in lines), lines
    assert any("hub.max_body" in line for line in lines)
    assert any("hub.bogus" in line for line in lines)

    # the files it names: read as the hub would, without starting it
    files = tmp_path / "files.toml"
    (tmp_path / "empty.token").write_text("\n")
    (tmp_path / "short.secret").write_text("short\n")
    files.write_text(
        f'[hub]\nread_token_file = "{tmp_path / "empty.token"}"\n'
        f'secret_file = "{tmp_path / "short.secret"}"\n'
        f'tls_cert_file = "{tmp_path / "absent.crt"}"\ntls_key_file = "{tmp_path / "absent.key"}"\n'
    )
    result = vigil("hub", "check-config", "--config", str(files))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    assert any("hub.read_token_file" in line and "is empty" in line for line in lines)
    assert any("hub.secret_file" in line and "at least 16 bytes" in line for line in lines)
    assert any("hub.tls_cert_file" in line and "cannot load" in line for line in lines)

    result = vigil("hub", "check-config", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2 and "absent.toml: cannot read" in result.stderr
    assert not (tmp_path / "data").exists()  # checking makes nothing


def test_each_check_config_says_when_the_file_is_for_the_other(tmp_path):
    result = vigil("check-config", "--config", str(EXAMPLE))
    assert result.returncode == 2
    assert "hub.listen: unknown key" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "vigil: hint: this looks like a hub config: use vigil hub check-config (or vigil hub run)"
    )
    agent = ROOT / "packaging" / "agent.example.toml"
    result = vigil("hub", "check-config", "--config", str(agent))
    assert result.returncode == 2
    assert "this looks like an agent config: use vigil check-config" in result.stderr
    # a plain mistake gets no hint
    bad = tmp_path / "agent.toml"
    bad.write_text('[agent]\ninterval = "5 parsecs"\n')
    assert "hint" not in vigil("check-config", "--config", str(bad)).stderr


def test_the_example_hub_config_is_valid_and_shows_every_key():
    result = vigil("hub", "check-config", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    text = EXAMPLE.read_text()
    shown = set(re.findall(r"^#? ?([a-z_]+) = ", text, re.M))
    shown |= set(re.findall(r"^#? ?\[\[hub\.([a-z_]+)\]\]", text, re.M))  # arrays of tables
    shown |= set(re.findall(r"^#? ?\[hub\.([a-z_]+)\]", text, re.M))  # tables: [hub.reports]
    keys = {f.name for f in dataclasses.fields(HubSection)}
    assert keys <= shown, f"not in {EXAMPLE.name}: {sorted(keys - shown)}"
    docs = (ROOT / "docs" / "configuration.md").read_text()
    docs = docs[docs.index("## The hub's configuration") :]
    docs = docs[: docs.find("\n## ", 5) if "\n## " in docs[5:] else None]
    documented = set(re.findall(r"`\[hub\] ([a-z_]+)`|`\[\[hub\.([a-z_]+)\]\]`", docs))
    documented = {a or b for a, b in documented}
    documented |= set(re.findall(r"`\[hub\.([a-z_]+)\]`", docs))  # tables: [hub.reports]
    # the keys of [hub.reports]: documented and shown too
    for key in (f.name for f in dataclasses.fields(ReportsSection)):
        assert f"`[hub.reports] {key}`" in docs, f"[hub.reports] {key} is not documented"
        assert re.search(rf"^#? ?{key} = ", text, re.M), f"[hub.reports] {key} not in the example"
    assert keys <= documented, f"not in docs/configuration.md: {sorted(keys - documented)}"
    assert documented <= shown, f"documented, not in the example: {sorted(documented - shown)}"


# -- SIGHUP --------------------------------------------------------------------


def test_sighup_applies_what_can_change_and_keeps_what_cannot(tmp_path):
    (tmp_path / "read-a").write_text("token-a\n")
    (tmp_path / "read-b").write_text("token-b\n")
    limits = 'max_series_per_host = 5\nread_token_file = "{}"\n'
    hub = Hub(tmp_path, limits.format(tmp_path / "read-a"))
    try:
        assert hub.notify is not None
        hub.notify.wait("READY=1")
        assert hub.get("/v1/hosts", "token-a")[0] == 200
        assert hub.post(batch(1, 3, ts=1767225600.0), TOKEN) == 200
        assert hub.post(batch(4, 10), TOKEN) == 422  # over max_series_per_host

        # a new read token, a higher limit, retention on, and a new port
        other_port = free_port()
        body = limits.format(tmp_path / "read-b").replace("= 5", "= 100")
        hub.reload(body, port=other_port, retention="1s")
        [reloaded] = hub.wait_event("reloaded")
        hub.notify.wait("RELOADING=1")
        hub.notify.wait("READY=1", count=2)
        assert set(reloaded["changed"]) == {
            "read_token_file",
            "max_series_per_host",
            "retention_raw",
        }
        [restart] = hub.events("reload_needs_restart")
        assert restart["keys"] == ["listen"]
        assert restart["kept"] == {"listen": f"127.0.0.1:{hub.port}"}
        assert hub.get("/v1/hosts", "token-a")[0] == 401
        assert hub.get("/v1/hosts", "token-b")[0] == 200
        assert hub.post(batch(4, 10), TOKEN) == 200  # the new limit

        # the new retention (1 s) starts the retention task: January's points go
        def january() -> list[float]:
            series = hub.get("/v1/metrics?host=web-01&name=m", "token-b")[1]["series"]
            return [p[0] for s in series for p in s["points"] if p[0] < 1767225601.0]

        wait_for(lambda: not january(), 15, "the January points to expire")

        # a bad config: logged with every problem, the running one kept
        hub.reload(body + 'max_body = "lots"\nbogus = 1\n')
        [failed] = hub.wait_event("reload_failed_keeping_old_config")
        assert len(failed["errors"]) == 2
        assert any("hub.max_body" in e for e in failed["errors"])
        hub.notify.wait(
            f"STATUS=reload failed, running the previous config; listening on 127.0.0.1:{hub.port}"
        )
        assert hub.get("/v1/hosts", "token-b")[0] == 200

        # a read token file gone: the same
        hub.reload(limits.format(tmp_path / "absent"))
        failed = hub.wait_event("reload_failed_keeping_old_config", count=2)[-1]
        assert "hub.read_token_file" in failed["errors"][0]
        assert hub.get("/v1/hosts", "token-b")[0] == 200
        assert hub.proc.poll() is None
    finally:
        assert hub.stop() == 0
    assert "Traceback" not in hub.log_path.read_text()


# -- rejected ingests ------------------------------------------------------------


def test_rejected_ingests_are_logged_by_reason_with_the_claimed_host(tmp_path):
    hub = Hub(tmp_path, 'max_series_per_host = 2\nmax_body = "2KiB"\n', notify=False)
    try:
        started = time.monotonic()
        refusals = [
            (401, "unauthorized", "evil", hub.post(batch(1, 1), "evil.0123abcd")),
            (401, "unauthorized", "evil", hub.post(batch(1, 1), "evil.0123abcd")),
            (403, "forbidden", "web-01", hub.post(batch(1, 1, host="db-01"), TOKEN)),
            (400, "malformed", "web-01", hub.post(b"not msgpack", TOKEN, "identity")),
            (415, "unsupported_encoding", "web-01", hub.post(batch(1, 1), TOKEN, "br")),
            (413, "too_large", "web-01", hub.post(os.urandom(4096), TOKEN, "identity")),
            (422, "series_limit", "web-01", hub.post(batch(1, 3), TOKEN)),
        ]
        elapsed = time.monotonic() - started
        assert [r[0] for r in refusals] == [r[3] for r in refusals]
        assert hub.post(batch(1, 1), TOKEN) == 200
        hub.wait_event("ingest_rejected", count=6)
        lines = hub.events("ingest_rejected")
        by_reason = {e["reason"]: e for e in lines}
        for status, reason, host, _ in refusals:
            assert by_reason[reason]["host"] == host, by_reason[reason]
            assert by_reason[reason]["status"] == status
        assert by_reason["forbidden"]["answer"]  # the answer the client got, for the log reader
        if elapsed < 10:  # the second 401 came within the 10 s: counted, not logged
            assert len(lines) == 6, lines
    finally:
        assert hub.stop() == 0


# -- permissions ------------------------------------------------------------------


def test_data_dir_and_database_are_private_without_systemd(tmp_path):
    old = os.umask(0o022)  # a usual login shell's
    try:
        hub = Hub(tmp_path, "", notify=False)
    finally:
        os.umask(old)
    try:
        assert hub.post(batch(1, 3), TOKEN) == 200  # the -wal and -shm are there now
        data = tmp_path / "data"
        assert stat.S_IMODE(data.stat().st_mode) == 0o750
        for name in ("hub.db", "hub.db-wal", "hub.db-shm"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    finally:
        assert hub.stop() == 0

    # an existing directory that others could enter, a database others could read
    data = tmp_path / "data"
    os.chmod(data, 0o775)
    os.chmod(data / "hub.db", 0o644)
    hub = Hub(tmp_path, "", notify=False)
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o750
        assert stat.S_IMODE((data / "hub.db").stat().st_mode) == 0o600
        [tightened] = hub.events("data_dir_permissions_tightened")
        assert tightened["was"] == "0o775"
    finally:
        assert hub.stop() == 0


# -- rotating the secret with an overlap ----------------------------------------


def test_secret_rotation_accepts_both_secrets_for_the_grace_and_not_after(tmp_path):
    new_secret = b"the new secret of the test hub!!"
    new_token = host_token("web-01", new_secret)
    hub = Hub(tmp_path, "")
    try:
        assert hub.post(batch(1, 1), TOKEN) == 200
        # docs/hub.md's steps: keep the old secret aside, write the new one, reload
        (tmp_path / "secret.old").write_bytes((tmp_path / "secret").read_bytes())
        (tmp_path / "secret").write_bytes(new_secret + b"\n")
        hub.reload(f'previous_secret_file = "{tmp_path / "secret.old"}"\n')
        [reloaded] = hub.wait_event("reloaded")
        assert "previous_secret_file" in reloaded["changed"]

        assert hub.post(batch(2, 1), TOKEN) == 200  # the old token, within the grace
        [used] = hub.wait_event("previous_secret_used")
        assert used["host"] == "web-01"
        until = used["until"]
        assert time.time() + 7 * 86400 - 60 < until <= time.time() + 7 * 86400
        assert "vigil_hub_previous_secret_hosts 1" in _metrics(hub)
        assert hub.post(batch(3, 1), new_token) == 200  # the host has its new token
        metrics = _metrics(hub)
        assert "vigil_hub_previous_secret_hosts 0" in metrics
        assert f"vigil_hub_previous_secret_expiry_timestamp_seconds {until}" in metrics
        assert hub.post(batch(4, 1), host_token("web-01", b"neither secret, 16+ bytes")) == 401
    finally:
        assert hub.stop() == 0

    # a restart does not extend the grace
    body = f'previous_secret_file = "{tmp_path / "secret.old"}"\n'
    hub = Hub(tmp_path, body, secret=new_secret)
    try:
        assert hub.post(batch(5, 1), TOKEN) == 200
        assert f"vigil_hub_previous_secret_expiry_timestamp_seconds {until}" in _metrics(hub)
    finally:
        assert hub.stop() == 0

    # once the grace is over (its start set back 8 days), the old token is refused
    grace = tmp_path / "data" / "previous_secret.json"
    kept = json.loads(grace.read_text())
    grace.write_text(json.dumps({**kept, "since": kept["since"] - 8 * 86400}))
    hub = Hub(tmp_path, body, secret=new_secret)
    try:
        assert hub.post(batch(6, 1), TOKEN) == 401
        assert hub.post(batch(6, 1), new_token) == 200
    finally:
        assert hub.stop() == 0


def test_check_config_refuses_a_previous_secret_that_is_missing_short_or_current(tmp_path):
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    (tmp_path / "short").write_bytes(b"short\n")
    for previous, why in (
        (tmp_path / "absent", "cannot read"),
        (tmp_path / "short", "at least 16 bytes"),
        (tmp_path / "secret", "the same secret as secret_file"),
    ):
        config = tmp_path / "hub.toml"
        config.write_text(
            f'[hub]\nsecret_file = "{tmp_path / "secret"}"\nprevious_secret_file = "{previous}"\n'
        )
        result = vigil("hub", "check-config", "--config", str(config))
        assert result.returncode == 2, result.stdout
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"vigil: {config}: hub.previous_secret_file: ") and why in line


def _metrics(hub: Hub) -> str:
    with urllib.request.urlopen(hub.url + "/metrics", timeout=30) as resp:
        return str(resp.read().decode())
