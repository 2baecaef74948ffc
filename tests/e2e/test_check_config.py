"""Issue 19: what `vigil check-config` accepts, `vigil run` accepts, and
what one refuses the other refuses, with the same lines: both load the
configuration and the files it names through one code path. Driven as an
operator does, through the real commands."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.harness import VIGIL, vigil

# A file the agent cannot use, and the line both commands must print for
# it (root writes to any directory: an unwritable state directory is a path
# under a file here)
BROKEN = {
    "missing token file": (
        '[hub]\nurl = "http://127.0.0.1:9"\ntoken_file = "{tmp}/absent.token"\n',
        "hub.token_file: cannot read: No such file or directory",
    ),
    "two tokens in the token file": (
        '[hub]\nurl = "http://127.0.0.1:9"\ntoken_file = "{tmp}/two.token"\n',
        "hub.token_file: cannot read: {tmp}/two.token does not hold one token (2 lines)",
    ),
    "hub ca_file not PEM": (
        '[hub]\nurl = "https://127.0.0.1:9"\ntoken = "{token}"\nca_file = "{tmp}/two.token"\n',
        "hub.ca_file: not a PEM certificate bundle",
    ),
    "notifier ca_file missing": (
        '[[notifiers]]\nname = "ops"\ntype = "webhook"\nurl = "https://127.0.0.1:9/x"\n'
        'ca_file = "{tmp}/absent.pem"\n',
        "notifiers[0].ca_file: cannot read: No such file or directory",
    ),
    "api listen on no address of this host": (
        '[api]\nlisten = "999.1.1.1:8651"\nallow_remote = true\n',
        "api.listen: cannot listen on 999.1.1.1:8651: '999.1.1.1' is no address of this host",
    ),
    "a token for another host": (
        '[hub]\nurl = "http://127.0.0.1:9"\ntoken = "web-01.{zeros}"\n',
        "hub.token: this token is for host 'web-01', not '{host}' ([agent] host_id): the hub"
        " would refuse it; `vigil hub token {host}` on the hub prints this host's",
    ),
    "a token file of another system's token": (
        '[hub]\nurl = "http://127.0.0.1:9"\ntoken_file = "{tmp}/other.token"\n',
        "hub.token_file: not a token `vigil hub token HOST` prints (HOST.MAC)",
    ),
    "state directory under a file": (
        '[agent]\nstate_dir = "{tmp}/two.token/state"\n',
        "agent.state_dir: cannot create state directory {tmp}/two.token/state:"
        " {tmp}/two.token is not a writable directory",
    ),
}


# a token of the form the hub prints, for this host (its default host_id)
TOKEN = f"{socket.gethostname()}.{'0' * 64}"


def write(tmp: Path, text: str) -> Path:
    (tmp / "two.token").write_text("host.abc\nhost.def\n")
    (tmp / "other.token").write_text("Bearer-abc123\n")
    body = text.format(tmp=tmp, token=TOKEN, zeros="0" * 64)
    if "[agent]" not in body:
        body = f'[agent]\nstate_dir = "{tmp}/state"\nlog_format = "json"\n' + body
    path = tmp / "agent.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_config_and_run_refuse_the_same_files_with_the_same_words(tmp_path, case):
    text, want = BROKEN[case]
    config = write(tmp_path, text)
    checked = vigil("check-config", "--config", str(config))
    run = vigil("run", "--config", str(config), timeout=30)
    want = want.format(tmp=tmp_path, host=socket.gethostname())
    assert (checked.returncode, run.returncode) == (2, 2), (checked.stderr, run.stderr)
    assert checked.stderr == run.stderr
    assert f"vigil: {config}: {want}" in checked.stderr


def test_warnings_are_printed_by_check_config_and_logged_once_by_run(tmp_path):
    """Legal but not working yet: exit 0, and the same warnings."""
    config = write(
        tmp_path,
        '[[logs]]\npaths = ["{tmp}/nowhere/*.log", "{tmp}/*.log", "{tmp}/old/*"]\n'
        '[[checks]]\nname = "web"\ntype = "http"\nurl = "https://127.0.0.1:9/"\n'
        'ca_file = "{tmp}/absent.pem"\n',
    )
    (tmp_path / "old" / "archive").mkdir(parents=True)  # a directory and a compressed
    (tmp_path / "old" / "app.log.2.gz").write_bytes(b"")  # rotation: nothing to follow
    checked = vigil("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    lines = checked.stderr.strip().splitlines()
    assert lines == [
        f"vigil: warning: {config}: checks[0].ca_file: cannot read: No such file or directory;"
        " the check fails until it is fixed",
        f"vigil: warning: {config}: logs[0].paths[0]: no such directory {tmp_path}/nowhere;"
        " followed once it appears",
        f"vigil: warning: {config}: logs[0].paths[1]: no file matches it yet;"
        " followed once it appears",
        f"vigil: warning: {config}: logs[0].paths[2]: matches 2 paths, none a file this table"
        " reads (not excluded, not a directory); a file it matches later is followed",
    ]
    log = tmp_path / "run.out"  # not *.log: the config follows those
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*VIGIL, "run", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: '"agent_ready"' in log.read_text(), timeout=30, what="ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    logged = [json.loads(line) for line in log.read_text().splitlines() if "config_warning" in line]
    assert [(w["key"], w["file"]) for w in logged] == [
        ("checks[0].ca_file", str(config)),
        ("logs[0].paths[0]", str(config)),
        ("logs[0].paths[1]", str(config)),
        ("logs[0].paths[2]", str(config)),
    ]


def test_a_rule_on_a_metric_nothing_configured_emits_is_a_warning(tmp_path):
    """`disk_usage_percent{mountpoint="/"}` was accepted and never fired;
    a rule on a check's metric is right once a check is configured."""
    rules = (
        '[[alerts]]\nname = "RootFull"\nexpr = \'disk_usage_percent{{mountpoint="/"}} > 90\'\n'
        '[[alerts]]\nname = "SlowChecks"\nexpr = "check_duration_seconds > 1"\n'
        '[[alerts]]\nname = "Full"\nexpr = "disk_used_percent > 90"\n'
    )
    config = write(tmp_path, rules)
    checked = vigil("check-config", "--config", str(config))
    assert checked.returncode == 0
    first, second = checked.stderr.splitlines()
    assert first == (
        f"vigil: warning: {config}: alerts[0].expr: rule 'RootFull': nothing configured emits"
        ' disk_usage_percent (did you mean "disk_used_percent"?); the rule never fires'
    )
    assert second.startswith(
        f"vigil: warning: {config}: alerts[1].expr: rule 'SlowChecks': nothing configured emits"
        " check_duration_seconds"
    )
    check = '[[checks]]\nname = "ssh"\ntype = "tcp"\naddress = "127.0.0.1:22"\n'
    config = write(tmp_path, rules + check)
    checked = vigil("check-config", "--config", str(config))
    assert "SlowChecks" not in checked.stderr and "RootFull" in checked.stderr


def test_what_the_second_read_found_is_neither_a_crash_nor_a_false_warning(tmp_path):
    """A token file that is not text, an absent() rule (it fires when
    nothing is there), a check's ca_file it never reads (no TLS to verify),
    an agent.lock that is a directory: each reported right, or not at all."""
    (tmp_path / "bad.token").write_bytes(b"\xff\xfe\x00token\n")
    (tmp_path / "notpem.pem").write_text("not a certificate\n")
    config = write(
        tmp_path,
        '[hub]\nurl = "http://127.0.0.1:9"\ntoken_file = "{tmp}/bad.token"\n',
    )
    checked = vigil("check-config", "--config", str(config))
    assert checked.returncode == 2, checked.stderr
    assert f"hub.token_file: cannot read: {tmp_path}/bad.token is not text" in checked.stderr
    quiet = write(
        tmp_path,
        '[[alerts]]\nname = "HeartbeatMissing"\nexpr = "absent(my_heartbeat_total)"\n'
        '[[checks]]\nname = "web"\ntype = "http"\nurl = "https://127.0.0.1:9/"\n'
        'verify_tls = false\nca_file = "{tmp}/notpem.pem"\n'
        '[[checks]]\nname = "port"\ntype = "tcp"\naddress = "127.0.0.1:9"\n'
        'ca_file = "{tmp}/notpem.pem"\n',
    )
    checked = vigil("check-config", "--config", str(quiet))
    assert (checked.returncode, checked.stderr) == (0, "")
    (tmp_path / "state" / "agent.lock").mkdir(parents=True)
    locked = vigil("check-config", "--config", str(write(tmp_path, "")))
    run = vigil("run", "--config", str(write(tmp_path, "")), timeout=30)
    assert (locked.returncode, run.returncode) == (2, 2)
    assert "agent.state_dir:" in locked.stderr and locked.stderr == run.stderr
    assert "agent.lock is a directory" in locked.stderr


def test_a_reload_refuses_what_check_config_refuses_and_keeps_running(tmp_path):
    """SIGHUP with a file naming a token file that is not there: the reload
    is refused with check-config's words and the running config is kept
    (it once stopped the shipper and went on without a word)."""
    config = write(tmp_path, "")
    out = tmp_path / "run.out"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(
            [*VIGIL, "run", "--config", str(config)], stdout=stdout, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: '"agent_ready"' in out.read_text(), timeout=30, what="ready")
        write(tmp_path, '[hub]\nurl = "http://127.0.0.1:9"\ntoken_file = "{tmp}/absent.token"\n')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload_failed_keeping_old_config" in out.read_text(), 30, "refusal")
        refused = next(
            json.loads(line)
            for line in out.read_text().splitlines()
            if "reload_failed_keeping_old_config" in line
        )
        checked = vigil("check-config", "--config", str(config))
        assert [f"vigil: {e}" for e in refused["errors"]] == checked.stderr.splitlines()
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_a_check_or_log_table_nothing_reads_is_a_warning(tmp_path):
    """With the default rules off, no hub and no endpoint, a check that no
    rule selects, and a log table with no rule or detector, produce
    nothing anyone sees: check-config says so (exit 0), and stops once a
    rule, the endpoint or a hub reads them. A log table with a rule is
    read: its events are logged without a hub (the second read found the
    first version of this warning false there)."""
    checks = (
        '[[checks]]\nname = "a"\ntype = "tcp"\naddress = "127.0.0.1:9"\n'
        '[[checks]]\nname = "b"\ntype = "tcp"\naddress = "127.0.0.1:9"\n'
        '[[alerts]]\nname = "BDown"\nexpr = \'check_up{{check="b"}} == 0\'\n'
        f'[[logs]]\npaths = ["{tmp_path}/*.log"]\ndefault_rules = false\ndetectors = []\n'
        f'[[logs]]\npaths = ["{tmp_path}/*.log"]\ndefault_rules = false\n'
        '[[logs.rules]]\nname = "boom"\npattern = "BOOM"\n'
    )
    config = write(tmp_path, "[alerting]\ndefault_rules = false\n" + checks)
    (tmp_path / "app.log").write_text("")
    checked = vigil("check-config", "--config", str(config))
    assert checked.returncode == 0
    nowhere = "no hub, no [api] endpoint and no alert rule reads them"
    assert checked.stderr.splitlines() == [
        f"vigil: warning: {config}: checks[0]: check 'a': its results go nowhere: {nowhere}",
        f"vigil: warning: {config}: logs[0]: no rules and no detectors, and its line counts"
        f" go nowhere: {nowhere}",
    ]
    for fix in (
        "",  # the default rules: CheckFailing and LogErrorRate read both
        '[alerting]\ndefault_rules = false\n[api]\nlisten = "127.0.0.1:9"\n',
        '[alerting]\ndefault_rules = false\n[hub]\nurl = "http://127.0.0.1:9"\ntoken = "{token}"\n',
    ):
        config = write(tmp_path, fix + checks)
        assert vigil("check-config", "--config", str(config)).stderr == "", fix


# What the agent keeps in its state directory, made unusable before it starts
STATE_ENTRIES = {
    "buffer is a file": (lambda s: (s / "buffer").write_text("x"), "buffer is not a directory"),
    "logs is a link to nothing": (
        lambda s: (s / "logs").symlink_to(s / "gone"),
        "logs is a symbolic link to nothing; vigil keeps a directory there",
    ),
    "alerts.series is a directory": (
        lambda s: (s / "alerts.series").mkdir(),
        "alerts.series is a directory; vigil keeps a file of that name",
    ),
    "checks.sla is a directory": (
        lambda s: (s / "checks.sla").mkdir(),
        "checks.sla is a directory; vigil keeps a file of that name",
    ),
    "agent.lock is a link": (
        lambda s: (s / "agent.lock").symlink_to("/nonexistent-vigil-test"),
        "agent.lock is a symbolic link to nothing; vigil keeps a file there",
    ),
}


@pytest.mark.parametrize("case", sorted(STATE_ENTRIES))
def test_what_the_state_directory_holds_is_checked_before_run_trips_on_it(tmp_path, case):
    """Found trying it as a new user: a stray file where the agent keeps a
    directory passed check-config, then `vigil run` died with a traceback."""
    make, want = STATE_ENTRIES[case]
    state = tmp_path / "state"
    state.mkdir()
    make(state)
    config = write(
        tmp_path,
        '[agent]\nstate_dir = "{tmp}/state"\n[hub]\nurl = "http://127.0.0.1:9"\ntoken = "{token}"\n'
        '[[checks]]\nname = "c"\ntype = "tcp"\naddress = "127.0.0.1:9"\n'
        '[[logs]]\npaths = ["{tmp}/*.log"]\n',
    )
    checked = vigil("check-config", "--config", str(config))
    run = vigil("run", "--config", str(config), timeout=30)
    assert (checked.returncode, run.returncode) == (2, 2), run.stderr
    assert checked.stderr == run.stderr
    assert f"agent.state_dir: {state}/{want}" in checked.stderr
    assert not Path("/nonexistent-vigil-test").exists()


def test_a_state_dir_under_a_link_to_nothing_is_refused_by_both(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    config = write(tmp_path, '[agent]\nstate_dir = "{tmp}/dangling/state"\n')
    checked = vigil("check-config", "--config", str(config))
    run = vigil("run", "--config", str(config), timeout=30)
    assert (checked.returncode, run.returncode) == (2, 2)
    assert checked.stderr == run.stderr
    assert f"agent.state_dir: {tmp_path}/dangling is a symbolic link to nothing" in checked.stderr


def test_programs_and_journal_directories_that_are_not_there_are_warnings(tmp_path):
    """Found trying it as a new user: accepted silently, then failing at
    every alert or run (exit 0: they may be installed later)."""
    config = write(
        tmp_path,
        '[[notifiers]]\nname = "fix"\ntype = "exec"\ncommand = ["/no/such/program", "x"]\n'
        '[[checks]]\nname = "plugin"\ntype = "command"\ncommand = ["check_nothing_here"]\n'
        '[[checks]]\nname = "ok"\ntype = "command"\ncommand = ["true"]\n'
        '[[journal]]\ndirectory = "{tmp}/journal"\n',
    )
    checked = vigil("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        f"vigil: warning: {config}: notifiers[0].command: /no/such/program is not found as an"
        " executable file; it fails until it is there",
        f"vigil: warning: {config}: checks[0].command: check_nothing_here is not found on PATH;"
        " it fails until it is there",
        f"vigil: warning: {config}: journal[0].directory: no such directory {tmp_path}/journal",
    ]
