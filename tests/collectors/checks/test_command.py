"""The command probe, driven for real: Debian's Monitoring Plugins
(monitoring-plugins-basic, `make test-deps`) against a real loopback port
and a real file system, and shell scripts that hang, fork, crash and
chatter. Nothing is mocked."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from collectors.checks import command
from collectors.checks.command import CommandCheck
from collectors.checks.model import Outcome, ProbeContext
from tests.collectors.checks.nginx import OK_BODY, Nginx
from tests.conftest import small_tmpfs, wait_for

PLUGINS = Path("/usr/lib/nagios/plugins")


def plugin(name: str) -> str:
    path = PLUGINS / name
    if not os.access(path, os.X_OK):
        pytest.skip(
            f"{path} is missing: install Debian's monitoring-plugins-basic (make test-deps)"
        )
    return str(path)


def cfg(*argv: str, timeout: float = 10.0) -> CommandCheck:
    return CommandCheck(
        name="cmd", type="command", command=argv, timeout=timeout, interval=max(30.0, timeout)
    )


def run(c: CommandCheck) -> Outcome:
    return asyncio.run(c.probe(ProbeContext()))


def script(tmp_path: Path, body: str, name: str = "plugin.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def group_gone(pgid: int) -> bool:
    """No process left in the group: killpg finds nobody to signal."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def gone_or_zombie(pid: int) -> bool:
    """Dead. An orphan's zombie is its new parent's (init's) to reap, not ours."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return text.rsplit(")", 1)[1].split()[0] in ("Z", "X")


# -- exit codes and messages, with check_dummy --------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("0", "ok", "OK: all good"),
        ("1", "warning", "WARNING: all good"),
        ("2", "critical", "CRITICAL: all good"),
        ("3", "unknown", "UNKNOWN: all good"),
    ],
)
def test_check_dummy_exit_code_is_the_status(code, status, message):
    out = run(cfg(plugin("check_dummy"), code, "all good"))
    assert (out.ok, out.status, out.message, out.perf) == (code == "0", status, message, ())
    assert 0 < out.latency < 5


# -- check_tcp -----------------------------------------------------------------------------


def test_check_tcp_ok_on_a_listening_port_with_its_time_in_seconds():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # the kernel completes the handshake; no accept needed
        port = server.getsockname()[1]
        out = run(cfg(plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(port), "-t", "5"))
    assert (out.ok, out.status) == (True, "ok")
    assert out.message.startswith("TCP OK - ") and f"port {port}" in out.message
    (time_,) = out.perf
    assert (time_.label, time_.unit, time_.min, time_.max) == ("time", "s", 0.0, 5.0)
    assert 0 <= time_.value < out.latency  # seconds, not milliseconds


def test_check_tcp_critical_on_a_closed_port():
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        port = bound.getsockname()[1]
        out = run(cfg(plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(port)))
    assert (out.ok, out.status, out.perf) == (False, "critical", ())
    assert out.message == f"connect to address 127.0.0.1 and port {port}: Connection refused"


# -- check_disk ----------------------------------------------------------------------------


def test_check_disk_perfdata_in_bytes_on_a_small_tmpfs(tmp_path):
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        (disk / "one-mib").write_bytes(b"\0" * 1024 * 1024)
        out = run(cfg(plugin("check_disk"), "-w", "1%", "-c", "1%", "-p", str(disk)))
    assert (out.ok, out.status) == (True, "ok")
    assert out.message.startswith(f"DISK OK - free space: {disk} ")
    (used,) = out.perf
    assert (used.label, used.unit, used.value) == (str(disk), "bytes", 1024 * 1024)
    assert (used.min, used.max) == (0.0, 4 * 1024 * 1024)
    # -w 1% -c 1% free: both alert above 99% used
    assert used.warn == used.crit == pytest.approx(0.99 * 4 * 1024 * 1024, abs=1)


def test_check_disk_on_the_root_file_system_matches_statvfs():
    out = run(cfg(plugin("check_disk"), "-w", "1%", "-c", "1%", "-p", "/"))
    fs = os.statvfs("/")
    total = fs.f_blocks * fs.f_frsize
    (used,) = out.perf
    assert (used.label, used.unit, used.min) == ("/", "bytes", 0.0)
    assert used.max == pytest.approx(total, abs=1024 * 1024)  # check_disk rounds to MiB
    # others write to / meanwhile: within 1% of its size
    assert used.value == pytest.approx((fs.f_blocks - fs.f_bfree) * fs.f_frsize, abs=total / 100)


# -- timeouts: the whole process group dies -------------------------------------------------


HANGS = """\
sleep 300 >/dev/null 2>&1 &
echo "$$ $!" > "$1.tmp" && mv "$1.tmp" "$1"
echo "still working"
sleep 300
"""


def test_timeout_kills_the_plugin_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    out = run(cfg(script(tmp_path, HANGS), str(pids), timeout=1.0))
    assert (out.ok, out.status) == (False, "unknown")
    assert out.message == "timed out after 1s (process group killed)"
    assert 1.0 <= out.latency < 1.0 + command.REAP_GRACE
    assert pids.exists(), "the script did not start within its 1s timeout"
    leader, child = map(int, pids.read_text().split())
    assert not Path(f"/proc/{leader}").exists()  # the plugin: killed and reaped by us
    wait_for(lambda: gone_or_zombie(child), timeout=5, what=f"child {child} to die")
    wait_for(lambda: group_gone(leader), timeout=5, what=f"process group {leader} to be empty")


def test_timeout_when_a_child_holds_the_output_pipe(tmp_path):
    # The plugin exits at once but leaves a child holding stdout: the probe
    # waits for the pipe until its timeout, then kills the group.
    body = 'sleep 300 &\necho "$!" > "$1.tmp" && mv "$1.tmp" "$1"\necho "OK: done"\n'
    pids = tmp_path / "pids"
    out = run(cfg(script(tmp_path, body), str(pids), timeout=0.5))
    assert (out.status, out.message) == ("unknown", "timed out after 0.5s (process group killed)")
    child = int(pids.read_text())
    wait_for(lambda: gone_or_zombie(child), timeout=5, what=f"child {child} to die")


def test_cancelling_the_probe_kills_the_group(tmp_path):
    # The runner's hard stop cancels a probe: its plugin must not outlive it.
    pids = tmp_path / "pids"

    async def main() -> None:
        task = asyncio.ensure_future(
            cfg(script(tmp_path, HANGS), str(pids), timeout=30.0).probe(ProbeContext())
        )
        await asyncio.to_thread(wait_for, pids.exists, 10, "the script to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    leader, child = map(int, pids.read_text().split())
    assert not Path(f"/proc/{leader}").exists()
    wait_for(lambda: gone_or_zombie(child), timeout=5, what=f"child {child} to die")
    wait_for(lambda: group_gone(leader), timeout=5, what=f"process group {leader} to be empty")


# -- programs that cannot run or misbehave -------------------------------------------------


def test_command_not_found(tmp_path):
    missing = str(tmp_path / "check_nothing")
    out = run(cfg(missing, "-w", "1"))
    assert (out.ok, out.status, out.message) == (False, "unknown", f"not found: {missing}")
    bare = run(cfg("vigil-no-such-plugin"))  # looked up in PATH
    assert bare.message == "not found: vigil-no-such-plugin"


def test_file_that_is_not_executable(tmp_path):
    path = tmp_path / "check_plain"
    path.write_text("#!/bin/sh\necho OK\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)  # no x bit: even root cannot exec it
    out = run(cfg(str(path)))
    assert (out.ok, out.status) == (False, "unknown")
    assert out.message == f"not executable: {path} (permission denied)"


def test_stderr_is_the_message_when_stdout_is_empty(tmp_path):
    body = "echo\nprintf '\\n  boom: disk gone  \\nmore\\n' >&2\nexit 2\n"
    out = run(cfg(script(tmp_path, body)))
    assert (out.ok, out.status, out.message) == (False, "critical", "boom: disk gone")


def test_stdout_wins_over_stderr(tmp_path):
    out = run(cfg(script(tmp_path, 'echo "noise" >&2\necho "WARNING: slow|t=2s;1;3"\nexit 1\n')))
    assert (out.status, out.message) == ("warning", "WARNING: slow")
    assert [(p.label, p.value, p.warn, p.crit) for p in out.perf] == [("t", 2.0, 1.0, 3.0)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('echo "weird state"\nexit 4\n', "exited 4: weird state"),
        ("exit 127\n", "exited 127"),
        ("exit 255\n", "exited 255"),
        ('echo "about to die"\nkill -9 $$\n', "killed by signal 9 (SIGKILL): about to die"),
        ("kill -TERM $$\n", "killed by signal 15 (SIGTERM)"),
    ],
)
def test_other_exit_codes_and_signals_are_unknown(tmp_path, body, message):
    out = run(cfg(script(tmp_path, body)))
    assert (out.ok, out.status, out.message) == (False, "unknown", message)


def test_no_output_at_all(tmp_path):
    assert run(cfg(script(tmp_path, "exit 0\n"))).message == ""
    out = run(cfg(script(tmp_path, "exit 2\n")))
    assert (out.status, out.message) == ("critical", "exited 2 with no output")


def test_a_chatty_plugin_does_not_stall_and_its_first_line_still_counts(tmp_path):
    # 4 MB on each stream, far past the pipe buffer and the 64 KiB kept
    body = (
        'echo "OK: chatty|lines=100000c"\n'
        "yes 'x' | head -c 4000000\n"
        "yes 'y' | head -c 4000000 >&2\n"
        "exit 0\n"
    )
    out = run(cfg(script(tmp_path, body), timeout=5.0))
    assert (out.ok, out.message) == (True, "OK: chatty")
    assert [(p.label, p.value, p.unit) for p in out.perf] == [("lines", 100000.0, "counter")]


def test_plugins_get_a_c_numeric_locale(tmp_path):
    out = run(cfg(script(tmp_path, 'echo "OK: LC_NUMERIC=$LC_NUMERIC"\n')))
    assert out.message == "OK: LC_NUMERIC=C"


def test_check_http_against_a_real_nginx(nginx: Nginx) -> None:
    """The Nagios http plugin through the command probe, against the same
    nginx the http probe is tested on: state, first line and perfdata."""
    check_http = plugin("check_http")
    port = str(nginx.http_port)
    out = run(cfg(check_http, "-H", "127.0.0.1", "-p", port, "-u", "/ok", "-s", OK_BODY))
    assert out.ok and out.status == "ok" and out.message.startswith("HTTP OK")
    perf = {p.label: p for p in out.perf}
    assert perf["time"].unit == "s" and 0 < perf["time"].value < 5
    assert perf["size"].unit == "bytes" and perf["size"].value > 0
    missing = run(cfg(check_http, "-H", "127.0.0.1", "-p", port, "-u", "/missing"))
    assert missing.status == "warning" and "404" in missing.message  # its default for 4xx
    tls = str(nginx.https_ports["expiring"])
    # -C 14: warn when the certificate has fewer than 14 days left (it has 5)
    cert = run(cfg(check_http, "-H", "localhost", "-I", "127.0.0.1", "-p", tls, "-S", "-C", "14"))
    assert cert.status in ("warning", "critical") and "expire" in cert.message.lower()
