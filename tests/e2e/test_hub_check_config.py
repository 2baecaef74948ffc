"""Issue 19, for the hub: what `vigil hub check-config` refuses, `vigil hub
run` refuses at start, with the same lines and exit 2 (a configuration
error: systemd's RestartPreventExitStatus=2 stops restarting it), and
what check-config passes, `hub run` starts with. Both load through
hub/reload.py's `load_for_run`. Driven as an operator does, through the
real commands. Root reads any file, so what the hub cannot use is made
otherwise here: missing, a directory, bad contents, a path under a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hub import datadir
from tests.e2e.harness import VIGIL, free_port, wait_http

SECRET = "a test secret of the hub, 32 b."

# A config's extra lines, and the line (after "vigil: CONFIG: ") both must print
BROKEN = {
    "secret_file missing": (
        'secret_file = "{tmp}/absent.secret"\n',
        "hub.secret_file: cannot read {tmp}/absent.secret: No such file or directory",
    ),
    "secret_file a directory": (
        'secret_file = "{tmp}/adir"\n',
        "hub.secret_file: cannot read {tmp}/adir: Is a directory",
    ),
    "secret too short": (
        'secret_file = "{tmp}/short.secret"\n',
        "hub.secret_file: {tmp}/short.secret: the hub secret must be at least 16 bytes",
    ),
    # check-config passed these two; `hub run` exited 1
    "the secret made on first start, too short": (
        'data_dir = "{tmp}/shortdata"\n',
        "hub.secret_file: {tmp}/shortdata/hub.secret: the hub secret must be at least 16 bytes",
    ),
    "the secret made on first start, a link to nothing": (
        'data_dir = "{tmp}/linkdata"\n',
        "hub.secret_file: {tmp}/linkdata/hub.secret is a symbolic link to nothing"
        " (secret_file is not set)",
    ),
    "previous_secret_file the same as the secret": (
        'secret_file = "{tmp}/good.secret"\nprevious_secret_file = "{tmp}/good.secret"\n',
        "hub.previous_secret_file: the same secret as secret_file",
    ),
    "previous_secret_file missing": (
        'previous_secret_file = "{tmp}/absent.secret"\n',
        "hub.previous_secret_file: cannot read {tmp}/absent.secret: No such file or directory",
    ),
    "read_token_file missing": (
        'read_token_file = "{tmp}/absent.token"\n',
        "hub.read_token_file: cannot read {tmp}/absent.token: No such file or directory",
    ),
    "read_token_file empty": (
        'read_token_file = "{tmp}/empty"\n',
        "hub.read_token_file: {tmp}/empty is empty",
    ),
    "tls cert not PEM": (
        'tls_cert_file = "{tmp}/notpem.pem"\ntls_key_file = "{tmp}/notpem.pem"\n',
        "hub.tls_cert_file: cannot load {tmp}/notpem.pem with its key: ",
    ),
    # a terminal asked for its passphrase and check-config passed; the service has none
    "tls key encrypted": (
        'tls_cert_file = "{tmp}/cert.pem"\ntls_key_file = "{tmp}/encrypted.key"\n',
        "hub.tls_cert_file: cannot load {tmp}/cert.pem with its key: {tmp}/encrypted.key is"
        " encrypted: give the hub the key without a passphrase",
    ),
    "listen on no address of this host": (
        'listen = "999.1.1.1:8650"\nread_token_file = "{tmp}/good.secret"\n',
        "hub.listen: cannot listen on 999.1.1.1:8650: '999.1.1.1' is no address of this host",
    ),
    "hub.db a link to nothing": (
        'data_dir = "{tmp}/dblink"\n',
        "hub.data_dir: {tmp}/dblink/hub.db is a symbolic link to nothing; vigil keeps a file there",
    ),
    "hub.db-wal a directory": (
        'data_dir = "{tmp}/waldir"\n',
        "hub.data_dir: {tmp}/waldir/hub.db-wal is a directory; vigil keeps a file of that name",
    ),
    # `hub run` exited 1 with an errno and no key for the data_dir ones
    "data_dir under a regular file": (
        'data_dir = "{tmp}/afile/data"\n',
        "hub.data_dir: cannot create data directory {tmp}/afile/data:"
        " {tmp}/afile is not a writable directory",
    ),
    "data_dir a regular file": (
        'data_dir = "{tmp}/afile"\n',
        "hub.data_dir: {tmp}/afile is not a writable directory",
    ),
    "data_dir a link to nothing": (
        'data_dir = "{tmp}/nowhere"\n',
        "hub.data_dir: {tmp}/nowhere is a symbolic link to nothing",
    ),
    "hub.db a directory": (
        'data_dir = "{tmp}/dbdir"\n',
        "hub.data_dir: {tmp}/dbdir/hub.db is a directory; vigil keeps a file of that name",
    ),
    # check-config refused these, and `hub run` started anyway
    "forward bearer_token_file missing": (
        '[[hub.forward]]\nname = "tsdb"\nurl = "http://127.0.0.1:9/write"\n'
        'bearer_token_file = "{tmp}/absent.token"\n',
        "hub.forward[0].bearer_token_file: cannot read {tmp}/absent.token:"
        " No such file or directory",
    ),
    "forward ca_file not PEM": (
        '[[hub.forward]]\nname = "tsdb"\nurl = "https://127.0.0.1:9/write"\n'
        'ca_file = "{tmp}/notpem.pem"\n',
        "hub.forward[0].ca_file: {tmp}/notpem.pem is not a PEM certificate bundle",
    ),
    # check-config passed it; `hub run` exited 1 with OpenSSL's words alone
    "notifier ca_file not PEM": (
        '[[hub.notifiers]]\nname = "ops"\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n'
        'ca_file = "{tmp}/notpem.pem"\n',
        "hub.notifiers[0].ca_file: {tmp}/notpem.pem is not a PEM certificate bundle",
    ),
    "dsn_file empty": (
        '[store]\nbackend = "postgres"\ndsn_file = "{tmp}/empty"\n',
        "store.dsn_file: {tmp}/empty is empty",
    ),
    "dsn_file missing": (
        '[store]\nbackend = "postgres"\ndsn_file = "{tmp}/absent.dsn"\n',
        "store.dsn_file: cannot read {tmp}/absent.dsn: No such file or directory",
    ),
}


def files(tmp: Path) -> None:
    """What the configs above name."""
    (tmp / "adir").mkdir()
    (tmp / "afile").write_text("a file\n")
    (tmp / "empty").write_text("\n")
    (tmp / "short.secret").write_text("short\n")
    (tmp / "good.secret").write_text(SECRET + "\n")
    (tmp / "notpem.pem").write_text("not a certificate\n")
    (tmp / "shortdata").mkdir(mode=0o750)
    (tmp / "shortdata" / "hub.secret").write_text("short\n")
    (tmp / "linkdata").mkdir(mode=0o750)
    (tmp / "linkdata" / "hub.secret").symlink_to(tmp / "absent.secret")
    (tmp / "nowhere").symlink_to(tmp / "absent" / "dir")
    (tmp / "dbdir" / "hub.db").mkdir(mode=0o750, parents=True)
    os.chmod(tmp / "dbdir", 0o750)
    (tmp / "dblink").mkdir(mode=0o750)
    (tmp / "dblink" / "hub.db").symlink_to(tmp / "absent.db")
    (tmp / "waldir" / "hub.db-wal").mkdir(mode=0o750, parents=True)
    os.chmod(tmp / "waldir", 0o750)
    _encrypted_tls(tmp)


def _encrypted_tls(tmp: Path) -> None:
    """A certificate and its key, the key under a passphrase."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "encrypted.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"a passphrase"),
        )
    )


def config(tmp: Path, extra: str, port: int) -> Path:
    """A hub config on `port`, its data in tmp/data unless `extra` says
    otherwise; `extra`'s [hub] keys first, then its tables."""
    body = extra.format(tmp=tmp)
    keys, table, tables = body.partition("[")
    if "data_dir = " not in keys:
        keys = f'data_dir = "{tmp / "data"}"\n' + keys
    if "listen = " not in keys:
        keys = f'listen = "127.0.0.1:{port}"\n' + keys
    path = tmp / "hub.toml"
    path.write_text(f"[hub]\n{keys}{table}{tables}")
    return path


def check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIGIL, "hub", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def run(path: Path, port: int, env: dict[str, str] | None = None) -> tuple[int | str, str]:
    """`vigil hub run`'s exit code and stderr; "listening" (and a SIGTERM)
    if it started instead of refusing."""
    out = path.parent / "run.out"
    err = path.parent / "run.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [*VIGIL, "hub", "run", "--config", str(path)], stdout=stdout, stderr=stderr, env=env
        )
    deadline = time.monotonic() + 30
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"hub run neither exited nor listened: {out.read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
                    return "listening", err.read_text()
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.read_text()


@pytest.mark.parametrize("case", list(BROKEN))
def test_hub_check_config_and_run_refuse_the_same_files_with_the_same_lines(tmp_path, case):
    extra, want = BROKEN[case]
    files(tmp_path)
    port = free_port()
    path = config(tmp_path, extra, port)
    checked = check(path)
    assert not (tmp_path / "data").exists()  # checking creates nothing
    code, stderr = run(path, port)
    assert (checked.returncode, code) == (2, 2), (checked.stderr, stderr)
    assert checked.stderr == stderr
    assert checked.stderr.startswith(f"vigil: {path}: {want.format(tmp=tmp_path)}"), stderr
    assert checked.stdout == ""


def test_every_problem_at_once_in_the_same_order(tmp_path):
    files(tmp_path)
    port = free_port()
    path = config(
        tmp_path,
        'data_dir = "{tmp}/afile/data"\nsecret_file = "{tmp}/short.secret"\n'
        'read_token_file = "{tmp}/absent.token"\n'
        '[[hub.forward]]\nname = "tsdb"\nurl = "http://127.0.0.1:9/write"\n'
        'bearer_token_file = "{tmp}/empty"\n',
        port,
    )
    checked = check(path)
    code, stderr = run(path, port)
    assert (checked.returncode, code) == (2, 2)
    assert checked.stderr == stderr
    keys = [line.split(": ")[2] for line in stderr.splitlines()]
    assert keys == [
        "hub.data_dir",
        "hub.secret_file",
        "hub.read_token_file",
        "hub.forward[0].bearer_token_file",
    ]


def test_postgres_without_psycopg_is_refused_by_both(tmp_path):
    """psycopg is the optional dependency of `backend = "postgres"`: without
    it `hub run` exited 1 and check-config passed. Shadowed here by a
    psycopg that cannot be imported."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no psycopg here (the test)")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    port = free_port()
    path = config(tmp_path, '[store]\nbackend = "postgres"\ndsn = "host=192.0.2.1 port=1"\n', port)
    checked = check(path, env)
    code, stderr = run(path, port, env)
    assert (checked.returncode, code) == (2, 2), (checked.stderr, stderr)
    want = (
        f'vigil: {path}: store.backend: "postgres" needs psycopg:'
        ' pip install "vigil-monitoring[postgres]" (no psycopg here (the test))\n'
    )
    assert checked.stderr == stderr == want


def test_a_config_check_config_passes_starts(tmp_path):
    """Good files (a read token, a previous secret, a data directory to be
    made, the secret in it too): check-config says ok and makes nothing;
    `hub run` makes them, listens, and stops on SIGTERM with 0; then
    check-config reads the secret it made, and passes again."""
    files(tmp_path)
    (tmp_path / "read.token").write_text("a read token\n")
    (tmp_path / "old.secret").write_text("the previous secret of the hub.\n")
    port = free_port()
    path = config(
        tmp_path,
        'previous_secret_file = "{tmp}/old.secret"\n'
        'read_token_file = "{tmp}/read.token"\ndata_dir = "{tmp}/new/data"\n',
        port,
    )
    checked = check(path)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, f"{path}: ok\n", "")
    assert not (tmp_path / "new").exists()
    out = tmp_path / "run.out"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(
            [*VIGIL, "hub", "run", "--config", str(path)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert (tmp_path / "new" / "data" / "hub.db").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
    assert (tmp_path / "new" / "data" / "hub.secret").is_file()
    checked = check(path)
    assert (checked.returncode, checked.stderr) == (0, "")


def test_a_runtime_failure_is_still_exit_1(tmp_path):
    """The port taken: not the configuration's fault, systemd may retry."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = config(tmp_path, "", port)
        assert check(path).returncode == 0
        proc = subprocess.run(
            [*VIGIL, "hub", "run", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("vigil: hub: ")


def test_a_data_dir_the_hub_cannot_make_private_is_named(tmp_path, monkeypatch):
    """`hub run` tightens an open data directory, which only its owner may
    do: a hub running as another user is told before it starts. (Root may
    chmod anything, so this asks the check alone, as that other user.)"""
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o770)
    monkeypatch.setattr(os, "geteuid", lambda: directory.stat().st_uid + 1)
    monkeypatch.setattr(os, "access", lambda *_: True)
    assert datadir.problem(directory) == (
        f"{directory} is open to others (0o770) and owned by uid {directory.stat().st_uid},"
        " so this user cannot make it private: chmod 0o750 it"
    )
    os.chmod(directory, 0o750)
    assert datadir.problem(directory) is None
    assert datadir.problem(tmp_path / "new" / "data") is None  # made by the hub
