"""`vigil buffer inspect|verify|repair` on a real buffer directory."""

from __future__ import annotations

import time

from agent.buffer import DiskBuffer
from tests.e2e.harness import Agent, agent_config, vigil


def make_buffer(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text(agent_config(tmp_path))
    directory = tmp_path / "state" / "buffer"
    now = time.time()
    with DiskBuffer(directory, segment_bytes=300) as buf:
        for i in range(10):
            buf.append([{"kind": "metric", "name": "x", "value": i, "ts": now - 60 + i}] * 3)
        buf.ack(6)
    return config, directory


def test_inspect_verify_repair(tmp_path):
    config, directory = make_buffer(tmp_path)
    shown = vigil("buffer", "inspect", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "acked      6" in shown.stdout
    assert "waiting    24 records" in shown.stdout
    oldest = int(shown.stdout.split("oldest     ")[1].split(" s")[0])
    assert 50 <= oldest <= 120  # the first waiting record is ~58 s old

    assert vigil("buffer", "verify", "--config", str(config)).returncode == 0

    segments = sorted(directory.glob("*.seg"))
    middle = segments[len(segments) // 2]
    data = bytearray(middle.read_bytes())
    data[-2] ^= 0xFF
    middle.write_bytes(bytes(data))
    checked = vigil("buffer", "verify", "--config", str(config))
    assert checked.returncode == 1
    assert middle.name in checked.stdout and "checksum" in checked.stdout

    repaired = vigil("buffer", "repair", "--config", str(config))
    assert repaired.returncode == 0, repaired.stderr
    assert f"{middle.name}: damaged" in repaired.stdout
    assert (directory / f"{middle.name}.corrupt").exists()
    assert vigil("buffer", "verify", "--config", str(config)).returncode == 0
    assert vigil("buffer", "repair", "--config", str(config)).stdout == "nothing to repair\n"


def test_repair_refuses_while_the_agent_runs(tmp_path):
    config, _ = make_buffer(tmp_path)
    agent = Agent(tmp_path, config.read_text())
    try:
        agent.notify.wait("READY=1")
        refused = vigil("buffer", "repair", "--config", str(agent.config_path))
        assert refused.returncode == 1 and "stop it first" in refused.stderr
        assert vigil("buffer", "inspect", "--config", str(agent.config_path)).returncode == 0
    finally:
        assert agent.stop() == 0
