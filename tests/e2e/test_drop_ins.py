"""Issue 19: drop-in files, as configuration management uses them. A role
adds `/etc/vigil/agent.d/NN-name.toml` (a check, a log file) without
owning agent.toml; the running agent takes it on SIGHUP, every error names
the drop-in it came from, and `check-config --show` tells which file set
each value. Driven through the real commands."""

from __future__ import annotations

import json
import signal
import socket
import sys

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, http_get, vigil

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_an_error_in_a_drop_in_names_that_file_for_check_config_and_run(tmp_path):
    main = tmp_path / "agent.toml"
    main.write_text(agent_config(tmp_path))
    (tmp_path / "agent.d").mkdir()
    drop_in = tmp_path / "agent.d" / "50-web.toml"
    drop_in.write_text('[[checks]]\nname = "web"\ntype = "http"\nurl = "ftp://x"\n')
    checked = vigil("check-config", "--config", str(main))
    run = vigil("run", "--config", str(main), timeout=30)
    assert (checked.returncode, run.returncode) == (2, 2)
    assert checked.stderr == run.stderr
    assert checked.stderr.startswith(f"vigil: {drop_in}: checks[0].url: expected an http://")


def test_show_prints_each_value_with_its_file_and_its_output_loads_back(tmp_path):
    main = tmp_path / "agent.toml"
    main.write_text(
        agent_config(tmp_path) + '[[checks]]\nname = "ssh"\ntype = "tcp"\naddress = "h:22"\n'
    )
    (tmp_path / "agent.d").mkdir()
    (tmp_path / "agent.d" / "10-fast.toml").write_text('[agent]\ninterval = "1s"\n')
    (tmp_path / "agent.d" / "20-web.toml").write_text(
        '[[checks]]\nname = "web"\ntype = "http"\nurl = "http://127.0.0.1:9/"\n'
        'labels = { team = "opé \\"a\\"" }\n'
    )
    shown = vigil("check-config", "--config", str(main), "--show")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f'interval = "1s"  # {tmp_path}/agent.d/10-fast.toml' in lines
    assert f'stop_timeout = "5s"  # {main}' in lines
    assert f'name = "web"  # {tmp_path}/agent.d/20-web.toml' in lines
    # the merged file is a configuration of its own, with no drop-ins beside it
    (tmp_path / "merged").mkdir()
    merged = tmp_path / "merged" / "agent.toml"
    merged.write_text(shown.stdout)
    again = vigil("check-config", "--config", str(merged), "--show")
    assert again.returncode == 0, again.stderr
    assert tomllib.loads(again.stdout) == tomllib.loads(shown.stdout)
    assert tomllib.loads(shown.stdout)["checks"][1]["labels"] == {"team": 'opé "a"'}
    ok = vigil("check-config", "--config", str(main))
    assert ok.stdout.splitlines() == [
        f"{main}: ok",
        f"{tmp_path}/agent.d/10-fast.toml: ok",
        f"{tmp_path}/agent.d/20-web.toml: ok",
    ]


def test_a_check_added_by_a_drop_in_runs_after_sighup_and_a_bad_one_is_refused(tmp_path):
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        target = server.getsockname()[1]
        agent = Agent(tmp_path, agent_config(tmp_path, port=port))
        try:
            wait_for(lambda: agent.events("agent_ready"), 30, "ready")
            (tmp_path / "agent.d").mkdir()
            drop_in = tmp_path / "agent.d" / "50-db.toml"
            drop_in.write_text(
                f'[[checks]]\nname = "db"\ntype = "tcp"\naddress = "127.0.0.1:{target}"\n'
                'interval = "1s"\n'
            )
            agent.signal(signal.SIGHUP)

            def db_up() -> bool:  # asked of the endpoint: `vigil checks` reads the files too
                status = json.loads(http_get(f"http://127.0.0.1:{port}/status")[2])
                return any(c["name"] == "db" and c.get("ok") for c in status["checks"] or [])

            wait_for(db_up, 30, "the drop-in's check up")
            drop_in.write_text('[[checks]]\nname = "db"\ntype = "tcp"\n')  # no address
            agent.signal(signal.SIGHUP)
            refused = wait_for(lambda: agent.events("reload_failed_keeping_old_config"), 30)
            assert refused[0]["errors"] == [f"{drop_in}: checks[0].address: required: a string"]
            assert db_up(), "the running configuration was kept"
        finally:
            assert agent.stop() == 0


def test_the_hub_reads_hub_d_and_names_the_drop_in_of_a_bad_file(tmp_path):
    main = tmp_path / "hub.toml"
    main.write_text(f'[hub]\nlisten = "127.0.0.1:{free_port()}"\ndata_dir = "{tmp_path}/data"\n')
    (tmp_path / "hub.d").mkdir()
    drop_in = tmp_path / "hub.d" / "50-read.toml"
    drop_in.write_text(f'[hub]\nread_token_file = "{tmp_path}/absent.token"\n')
    checked = vigil("hub", "check-config", "--config", str(main))
    run = vigil("hub", "run", "--config", str(main), timeout=30)
    assert (checked.returncode, run.returncode) == (2, 2)
    assert checked.stderr == run.stderr
    assert checked.stderr.startswith(f"vigil: {drop_in}: hub.read_token_file: cannot read ")
    (tmp_path / "absent.token").write_text("reader\n")
    shown = vigil("hub", "check-config", "--config", str(main), "--show")
    assert shown.returncode == 0, shown.stderr
    assert f'read_token_file = "{tmp_path}/absent.token"  # {drop_in}' in shown.stdout
    assert not (tmp_path / "data").exists()  # check-config creates nothing
