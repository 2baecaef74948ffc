"""The Debian package, built by `make deb` and installed with dpkg on this
machine: what a sysadmin gets from `apt install ./vigil_*.deb`.

Runs as root on Debian only (it installs into /usr, /etc and /var); it
purges the package at the end, even when a test failed, so the rest of the
suite runs on a clean machine. systemd need not be PID 1: the maintainer
scripts go through deb-systemd-helper / deb-systemd-invoke, and the agent is
started here the way its unit would start it.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import NotifySocket, free_port

ROOT = Path(__file__).parents[2]
PREFIXES = ("/usr/lib/vigil", "/etc/vigil", "/var/lib/vigil")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "installs a .deb: needs root (CI runs as root)"
    if not Path("/etc/debian_version").exists() or shutil.which("dpkg") is None:
        return "not a Debian system with dpkg"
    for tool in ("dpkg-buildpackage", "dh_virtualenv", "lintian", "systemd-analyze", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is missing; `make test-deps` installs what `make deb` needs"
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "vigil"], capture_output=True, text=True
    )
    if "installed" in status.stdout and "not-installed" not in status.stdout:
        return "a vigil package is installed on this machine already: not touching it"
    return None


pytestmark = [pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))]


def run(
    *cmd: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, f"{cmd}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def leftovers() -> list[str]:
    return [p for p in PREFIXES if Path(p).exists()] + (
        ["/var/lib/vigil-hub"] if Path("/var/lib/vigil-hub").exists() else []
    )


def purge() -> None:
    subprocess.run(["dpkg", "--purge", "vigil"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """`make deb` (lintian included: it fails on an error), and the same
    build under a higher version for the upgrade. Purges at the end."""
    start = time.monotonic()
    built = run("make", "-s", "deb", cwd=ROOT, timeout=900)
    seconds = time.monotonic() - start
    changelog = "packaging/debian/changelog"
    version = run("dpkg-parsechangelog", "-l", changelog, "-S", "Version", cwd=ROOT)
    arch = run("dpkg", "--print-architecture").stdout.strip()
    deb = ROOT / "dist" / f"vigil_{version.stdout.strip()}_{arch}.deb"
    assert deb.is_file(), built.stdout[-2000:]
    warnings = sorted(set(re.findall(r"^W: vigil: (\S+)", built.stdout, re.M)))
    size = deb.stat().st_size
    installed_kib = run("dpkg-deb", "-f", str(deb), "Installed-Size").stdout.strip()
    print(
        f"\n{deb.name}: {size / 1e6:.1f} MB, Installed-Size {int(installed_kib) / 1024:.1f} MiB,"
        f" built and checked in {seconds:.0f} s; lintian warnings: {warnings}"
    )

    # The upgrade: this build, unpacked and packed again as a higher version.
    tree = tmp_path_factory.mktemp("upgrade") / "tree"
    run("dpkg-deb", "-R", str(deb), str(tree))
    control = tree / "DEBIAN" / "control"
    control.write_text(
        re.sub(r"^Version: (.*)$", r"Version: \1+upgrade1", control.read_text(), flags=re.M)
    )
    newer = deb.with_name(f"vigil_{version.stdout.strip()}+upgrade1_{arch}.deb")
    run("dpkg-deb", "-Zgzip", "--root-owner-group", "-b", str(tree), str(newer), timeout=300)
    try:
        yield deb, newer
    finally:
        purge()
        newer.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def installed(debs: tuple[Path, Path]) -> Path:
    deb = debs[0]
    # Offline: in a network namespace of its own when unshare works here.
    cmd = ["dpkg", "-i", str(deb)]
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]
    run(*cmd, timeout=300)
    return deb


def test_vigil_command_runs(installed: Path) -> None:
    assert os.path.realpath("/usr/bin/vigil") == "/usr/lib/vigil/bin/vigil"
    out = run("/usr/bin/vigil", "--version").stdout
    assert out.startswith("vigil "), out
    # Every import the agent and the hub may need is in the private tree.
    run(
        "/usr/lib/vigil/bin/python",
        "-c",
        "import aiohttp, h11, uvloop, msgpack, watchfiles, structlog, zstandard, cramjam,"
        " cryptography, hyperscan, psutil, psycopg; import agent, collectors, hub",
    )


def test_nothing_reaches_the_system_python(installed: Path) -> None:
    files = run("dpkg", "-L", "vigil").stdout.split()
    stray = [f for f in files if "python3/dist-packages" in f or f.startswith("/usr/local")]
    assert not stray, stray
    probe = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import collectors"], capture_output=True, text=True
    )
    assert probe.returncode != 0


def test_user_and_groups(installed: Path) -> None:
    groups = run("id", "-nG", "vigil").stdout.split()
    assert {"vigil", "adm", "systemd-journal"} <= set(groups), groups
    state = Path("/var/lib/vigil").stat()
    assert state.st_uid == int(run("id", "-u", "vigil").stdout)
    assert state.st_mode & 0o777 == 0o750


def test_configs_pass_check_config(installed: Path) -> None:
    assert "/etc/vigil/agent.toml" in run("dpkg-query", "-W", "-f=${Conffiles}", "vigil").stdout
    run("/usr/bin/vigil", "check-config", "--config", "/etc/vigil/agent.toml")
    run("/usr/bin/vigil", "hub", "check-config", "--config", "/etc/vigil/hub.toml")
    # where configuration management drops its files (docs/configuration.md)
    assert Path("/etc/vigil/agent.d").is_dir() and Path("/etc/vigil/hub.d").is_dir()


@pytest.mark.parametrize("unit", ["vigil-agent.service", "vigil-hub.service"])
def test_installed_units_verify(installed: Path, unit: str) -> None:
    path = f"/lib/systemd/system/{unit}"
    result = run("systemd-analyze", "verify", path)
    assert unit not in result.stderr, result.stderr


def test_agent_enabled_hub_not(installed: Path) -> None:
    wants = Path("/etc/systemd/system/multi-user.target.wants")
    assert (wants / "vigil-agent.service").is_symlink()
    assert not (wants / "vigil-hub.service").exists()


def test_installed_agent_unit_security(installed: Path) -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            "--no-pager",
            "/lib/systemd/system/vigil-agent.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, match.group(0)


def test_agent_starts_as_the_unit_would(installed: Path) -> None:
    """User vigil with its groups, STATE_DIRECTORY, NOTIFY_SOCKET: READY=1
    arrives and /metrics answers. The local endpoint is switched on by
    editing the conffile, an edit the upgrade below must keep."""
    if Path("/run/systemd/system").exists():  # systemd runs: the unit itself started it
        subprocess.run(["systemctl", "stop", "vigil-agent"], timeout=60)
    port = free_port()
    conf = Path("/etc/vigil/agent.toml")
    text = conf.read_text()
    assert '# listen = "127.0.0.1:8651"' in text
    conf.write_text(text.replace('# listen = "127.0.0.1:8651"', f'listen = "127.0.0.1:{port}"'))

    sockdir = Path(tempfile.mkdtemp(prefix="vigil-deb-"))
    sockdir.chmod(0o755)
    notify = NotifySocket(sockdir / "notify.sock")
    notify.path.chmod(0o777)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "NOTIFY_SOCKET": str(notify.path),
        "STATE_DIRECTORY": "/var/lib/vigil",
        "LANG": "C.UTF-8",
    }
    proc = subprocess.Popen(
        [
            *("setpriv", "--reuid=vigil", "--regid=vigil", "--init-groups", "--no-new-privs"),
            *("--", "/usr/bin/vigil", "run", "--config", str(conf)),
        ],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0o027),
    )
    try:
        notify.wait("READY=1", timeout=30)

        def metrics() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode() if r.status == 200 else None
            except OSError:
                return None

        body = wait_for(metrics, 15, "/metrics")
        assert "cpu_usage_percent" in body or "memory_available_bytes" in body, body[:500]
        lock = Path("/var/lib/vigil/agent.lock")
        assert lock.exists() and lock.stat().st_uid == int(run("id", "-u", "vigil").stdout)
        assert grp.getgrgid(lock.stat().st_gid).gr_name == "vigil"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        notify.close()
        shutil.rmtree(sockdir, ignore_errors=True)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def test_upgrade_keeps_the_edited_conffile(debs: tuple[Path, Path], installed: Path) -> None:
    edited = Path("/etc/vigil/agent.toml").read_text()
    assert "\nlisten = " in edited  # the edit made by the test above
    result = run("dpkg", "-i", str(debs[1]), timeout=300)
    assert "+upgrade1" in run("dpkg-query", "-W", "-f=${Version}", "vigil").stdout, result.stdout
    assert Path("/etc/vigil/agent.toml").read_text() == edited
    assert Path("/etc/systemd/system/multi-user.target.wants/vigil-agent.service").is_symlink()
    run("/usr/bin/vigil", "check-config", "--config", "/etc/vigil/agent.toml")
    # Enrolment as docs/operations.md does it: the token file, the [hub] table.
    token = subprocess.run(
        ["install", "-m", "0640", "-g", "vigil", "/dev/stdin", "/etc/vigil/token"],
        input=f"{socket.gethostname()}.{'0' * 64}\n",  # HOST.MAC for this host, as the hub prints
        text=True,
        capture_output=True,
    )
    assert token.returncode == 0, token.stderr
    with open("/etc/vigil/agent.toml", "a") as f:
        f.write('\n[hub]\nurl = "http://hub.example.net:8650"\ntoken_file = "/etc/vigil/token"\n')
    run("/usr/bin/vigil", "check-config", "--config", "/etc/vigil/agent.toml")


def test_remove_then_purge_leaves_nothing(installed: Path) -> None:
    run("dpkg", "-r", "vigil", timeout=300)
    assert not Path("/usr/bin/vigil").exists()
    assert not Path("/usr/lib/vigil").exists()
    assert Path("/etc/vigil/agent.toml").exists()  # remove keeps the configuration
    run("dpkg", "-P", "vigil", timeout=300)
    assert leftovers() == []
    assert not Path("/etc/systemd/system/multi-user.target.wants/vigil-agent.service").exists()
