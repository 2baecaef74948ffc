import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config
from agent.core.schema import ConfigError


def problems(text, tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        config.load(path)
    return [str(p) for p in exc.value.problems], str(path)


def test_no_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "missing.toml")
    cfg = config.load(None)
    assert cfg.agent.interval == 10.0
    assert cfg.host.enabled == ("cpu", "load", "memory", "disk", "diskio", "network", "system")
    assert cfg.api.listen is None
    assert cfg.interval_for("cpu") == 10.0


def test_empty_file_gives_defaults_and_units_are_parsed(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("")
    assert config.load(path).agent.stop_timeout == 10.0
    path.write_text(
        '[agent]\ninterval = "1m30s"\nstop_timeout = "500ms"\n[host]\ninterval = "5s"\n'
    )
    cfg = config.load(path)
    assert cfg.agent.interval == 90.0 and cfg.agent.stop_timeout == 0.5
    assert cfg.interval_for("disk") == 5.0 and cfg.interval_for("self") == 90.0


def test_config_is_frozen(tmp_path):
    cfg = config.Config()
    with pytest.raises(AttributeError):
        cfg.agent.interval = 1.0  # type: ignore[misc]


def test_every_problem_is_reported_with_file_and_key_path(tmp_path):
    found, path = problems(
        """
[agent]
intervall = "10s"
interval = 10
log_level = "loud"
[host]
enabled = ["cpu", "gpu"]
[host.diskio]
exclude_devices = ["^sd", "(unclosed"]
[host.network]
include_loopback = "yes"
[api]
listen = "0.0.0.0:8651"
[surprise]
""",
        tmp_path,
    )
    expected = [
        'agent.intervall: unknown key (did you mean "interval"?)',
        'agent.interval: expected a duration string with a unit, like "10s"',
        "agent.log_level: expected one of 'debug', 'info', 'warning', 'error', got 'loud'",
        "host.enabled: unknown collector 'gpu'",
        "host.diskio.exclude_devices[1]: not a valid regular expression",
        "host.network.include_loopback: expected true or false, got str 'yes'",
        "api.listen: listen = '0.0.0.0:8651' is not a loopback address; set allow_remote = true",
        "surprise: unknown key",
    ]
    assert len(found) == len(expected)
    for want in expected:
        assert any(p.startswith(f"{path}: {want}") for p in found), (want, found)


def test_remote_listen_allowed_when_asked(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[api]\nlisten = "0.0.0.0:8651"\nallow_remote = true\n')
    assert config.load(path).api.listen == "0.0.0.0:8651"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[agent\n", "not valid TOML"),
        ('[agent]\ninterval = "1ms"\n', "agent.interval: must be at least 0.05"),
        (
            "[agent]\nhost_id = 'a b'\n",
            "agent.host_id: must hold no spaces, control characters or slashes",
        ),
        ("agent = 3\n", "agent: expected a table"),
        ('[api]\nlisten = "nope"\n', 'api.listen: expected "HOST:PORT"'),
        ("[host.disk]\nexclude_mounts = [1]\n", "host.disk.exclude_mounts[0]: expected a string"),
        ('[host]\nprocfs = ""\n', "host.procfs: expected a path string"),
        (
            '[hub]\nurl = "http://a:1"\nurls = ["http://b:1"]\ntoken = "t"\n',
            "hub.urls: set url or urls, not both",
        ),
        ('[hub]\nurls = ["http://a:1", "http://a:1"]\ntoken = "t"\n', "hub.urls: a hub is listed"),
        ('[hub]\nurls = ["http://a:1", "ftp://b"]\ntoken = "t"\n', "hub.urls[1]: expected an http"),
        ('[hub]\nurls = ["http://a:1"]\n', "hub.token: a hub url needs token or token_file"),
    ],
)
def test_single_errors(tmp_path, text, want):
    found, path = problems(text, tmp_path)
    assert any(want in p for p in found), found
    assert all(p.startswith(path) for p in found)


def vigil(*args):
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_exit_codes(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[agent]\ninterval = "5s"\n')
    result = vigil("check-config", "--config", str(good))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[agent]\ninterval = "5 parsecs"\nbogus = 1\n')
    result = vigil("check-config", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2  # every error at once, one line each
    assert all(str(bad) in line for line in lines)
    assert any("agent.interval" in line for line in lines)
    assert any("agent.bogus" in line for line in lines)

    result = vigil("check-config", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "absent.toml: cannot read" in result.stderr

    assert vigil("no-such-command").returncode == 2


def test_example_configs_are_valid(tmp_path):
    """As `make run` uses them: from a directory where `run/token` exists
    (make run writes it; check-config reads the token file as run does)."""
    root = Path(__file__).parents[2] / "packaging"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "token").write_text(f"demo.{'0' * 64}\n")  # HOST.MAC, as the hub makes
    for name in ("agent.example.toml", "demo.toml"):
        result = subprocess.run(
            [sys.executable, "-m", "agent", "check-config", "--config", str(root / name)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(root.parent)},
        )
        assert result.returncode == 0, result.stderr


def test_rule_notifier_and_disable_names_are_all_reported_with_the_key_errors(tmp_path):
    """Issue 19: every unknown notifier a rule names and every unknown
    default rule in `disable`, with the closest name, in the same run as a
    key error elsewhere (they once came one at a time, after the rest was fixed)."""
    text = (
        '[agent]\nintervall = "10s"\n'
        '[[notifiers]]\nname = "pager"\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'
        '[[alerts]]\nname = "Disk"\nexpr = "disk_used_percent > 90"\nnotify = ["pagr", "mail"]\n'
        '[[alerts]]\nname = "Load"\nexpr = "load_average > 4"\nnotify = ["pager", "slack"]\n'
        '[alerting]\ndisable = ["HighCPU", "HighMemoryUsage"]\n'
    )
    got, path = problems(text, tmp_path)
    assert [line.split(": ")[1] for line in got] == [
        "agent.intervall",
        "alerts[0].notify[0]",
        "alerts[0].notify[1]",
        "alerts[1].notify[1]",
        "alerting.disable[0]",
    ]
    assert all(line.startswith(path) for line in got)
    assert "no notifier named 'pagr' (did you mean \"pager\"?)" in got[1]
    assert "no notifier named 'mail'; defined: journal, pager" in got[2]
    assert "'HighCPU' is not a default rule (did you mean \"HighCPUUsage\"?)" in got[4]


def test_a_broken_notifier_table_does_not_make_every_rule_wrong(tmp_path):
    """Names are checked against the notifiers only once they all build: a
    key error in one is reported alone, not as a missing name in each rule."""
    text = (
        '[[notifiers]]\nname = "pager"\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'
        "retries = 3\n"
        '[[alerts]]\nname = "Disk"\nexpr = "disk_used_percent > 90"\nnotify = ["pager"]\n'
    )
    got, _ = problems(text, tmp_path)
    assert len(got) == 1 and "notifiers[0].retries: unknown key" in got[0]


def test_a_check_name_used_twice_is_reported_with_the_other_errors(tmp_path):
    text = (
        '[agent]\nintervall = "10s"\n'
        '[[checks]]\nname = "ssh"\ntype = "tcp"\naddress = "127.0.0.1:22"\n'
        '[[checks]]\nname = "ssh"\ntype = "tcp"\naddress = "127.0.0.1:2222"\n'
    )
    got, _ = problems(text, tmp_path)
    assert [line.split(": ")[1] for line in got] == ["agent.intervall", "checks[1].name"]
    assert "check name 'ssh' is used twice" in got[1]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            '[[logs]]\npaths = ["/var/log/x.log"]\nencoding = "undefined"\n',
            "logs[0].encoding: encoding 'undefined' cannot read log lines",
        ),
        (
            '[[logs]]\npaths = ["/var/log/x.log"]\nencoding = "idna"\n',
            "logs[0].encoding: encoding 'idna' cannot read log lines",
        ),
        ('[agent]\nstate_dir = "/tmp/a\\u0000b"\n', "agent.state_dir: a path cannot hold a NUL"),
        (
            '[agent]\ninterval = "10s"\njitter = "3s"\n[host]\ninterval = "1s"\n',
            "agent.jitter: must be shorter than the interval (1s)",
        ),
        (
            '[hub]\nurl = "http://h:1"\ntoken = "x\\ny"\n',
            "hub.token: expected the one line that `vigil hub token HOST` prints, with no spaces",
        ),
        (
            '[hub]\nurl = "http://h:1"\ntoken_file = "/etc/\\u0000"\n',
            "hub.token_file: a path cannot hold a NUL",
        ),
        (
            '[[logs]]\npaths = ["/var/log/x.log"]\n[[logs.rules]]\nname = "r"\n'
            "pattern = '[[:alpha:]]+'\n",
            "logs[0].rules[0].pattern: Possible nested set at position 1 (Python has no POSIX",
        ),
    ],
)
def test_values_that_crashed_the_agent_are_config_errors(tmp_path, text, want):
    """Found trying it as a new user: each was a traceback from check-config
    or run, or a line of Python's warnings on stderr."""
    found, path = problems(text, tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{path}: {want}"), found


def test_a_byte_order_mark_is_named(tmp_path):
    found, _ = problems('\ufeff[agent]\ninterval = "10s"\n', tmp_path)
    assert found[0].endswith("(it starts with a byte order mark: save it as UTF-8 without one)")
