"""The whole daemon in this process, under the conftest's blocking-call
check: start-up, collection, the endpoint, a reload and a stop must never
make a blocking call on the event loop (end-to-end tests in tests/e2e run
it as a real process; this one can see inside the loop)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import structlog
import uvloop

from agent import config
from agent.core import logsetup
from agent.runtime import Agent
from tests.e2e.harness import free_port


def test_daemon_never_blocks_its_loop(tmp_path):
    port = free_port()
    path = tmp_path / "agent.toml"
    log = tmp_path / "app.log"
    log.write_text("started\nERROR database connection failed: refused\n")
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\ninterval = "100ms"\n'
        f'[api]\nlisten = "127.0.0.1:{port}"\n'
        f'[[logs]]\npaths = ["{log}"]\nstart_at = "beginning"\n'
    )
    logsetup.configure("warning", "json")
    agent = Agent(config.load(path), str(path))
    agent.prepare()

    async def scenario():
        running = asyncio.create_task(agent.run())
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                logs = agent.logs.view.get("matches") if agent.logs else None
                if agent.stats.get("diskio") and agent.stats["diskio"].runs >= 3 and logs:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a few more runs of the logs collector
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/status") as resp:
                status = await resp.json()
            agent.request_reload()
            await agent._reloading
        agent.request_stop(signal.SIGTERM)
        return await running, text, status

    try:
        code, text, status = uvloop.run(scenario())
    finally:
        structlog.reset_defaults()
    assert code == 0
    assert "disk_reads_per_second" in text and "memory_available_bytes" in text
    assert f'log_matches_total{{file="{log}",rule="database_connection_failed"}} 1' in text
    assert [(c["name"], c["last_error"]) for c in status["collectors"] if c["errors"]] == []
    assert agent.stats["cpu"].runs >= 3
    # the process gets its default signal handling back
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
