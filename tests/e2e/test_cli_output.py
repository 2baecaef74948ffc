"""A command's stdout is its answer: `vigil hub token HOST > token_file`
must write the token and nothing else, whatever the command logs (found
when `make run` wrote a log line into the demo agent's token file, and its
shipper died on the header). And an agent refuses a token file that holds
more than one token, naming the file."""

from __future__ import annotations

from tests.e2e.harness import vigil


def test_hub_token_prints_the_token_alone_and_logs_to_stderr(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # the hub tightens it to 0750, and says so in its log
    data.chmod(0o755)
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata_dir = "{data}"\n')
    result = vigil("hub", "token", "web-01", "--config", str(config))
    assert result.returncode == 0
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("web-01.")
    assert "data_dir_permissions_tightened" in result.stderr


def test_an_agent_refuses_a_token_file_of_several_lines(tmp_path):
    token = tmp_path / "token"
    token.write_text("2026-11-28 [warning] something\nweb-01.abcdef\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[hub]\nurl = "http://127.0.0.1:9"\ntoken_file = "{token}"\n'
    )
    result = vigil("run", "--config", str(config), timeout=30)
    assert result.returncode == 2
    assert "token_file" in result.stderr and "does not hold one token (2 lines)" in result.stderr
