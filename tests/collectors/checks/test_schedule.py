"""Checks on the agent's scheduler: a slow target delays no other check,
and checks sharing an interval spread over it."""

from __future__ import annotations

import asyncio
import socket
import time

from agent.core.records import CheckRun
from agent.core.schema import build
from agent.scheduler import CollectorStats, Schedule
from collectors.checks.service import Checks, phase_of
from collectors.checks.tcp import TcpCheck


def test_a_slow_target_delays_no_other_check(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    listening = socket.create_server(("127.0.0.1", 0))
    try:
        run_both(tmp_path, silent.getsockname()[1], listening.getsockname()[1])
    finally:
        silent.close()
        listening.close()


def run_both(tmp_path, slow_port: int, fast_port: int) -> None:
    configs = [
        build(
            TcpCheck,
            {
                "name": "slow",
                "type": "tcp",
                "address": f"127.0.0.1:{slow_port}",
                "send": "PING\n",
                "expect": "PONG",
                "interval": "2s",
                "timeout": "1500ms",
                "retries": 0,
            },
            "agent.toml",
        ),
        build(
            TcpCheck,
            {"name": "fast", "type": "tcp", "address": f"127.0.0.1:{fast_port}", "interval": "1s"},
            "agent.toml",
        ),
    ]
    runs: dict[str, list[float]] = {"slow": [], "fast": []}

    def sink(name: str, records) -> None:
        for r in records:
            if isinstance(r, CheckRun):
                runs[r.name].append(time.monotonic())

    async def main() -> None:
        checks = Checks(configs, tmp_path)
        tasks = [
            asyncio.create_task(
                Schedule(c, c.cfg.interval, c.cfg.interval + 2, 0.0, sink, CollectorStats()).run()
            )
            for c in checks.collectors()
        ]
        await asyncio.sleep(3.6)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    # the fast check ran every second while the slow one waited 1.5 s each time
    assert len(runs["fast"]) == 4 and len(runs["slow"]) == 2
    gaps = [b - a for a, b in zip(runs["fast"], runs["fast"][1:])]
    assert all(0.8 < g < 1.2 for g in gaps), gaps


def test_checks_sharing_an_interval_spread_over_it():
    interval = 10.0
    phases = sorted(phase_of(f"check-{i}", interval) for i in range(300))
    assert all(0 <= p < interval for p in phases)
    # every tenth of the interval holds about a tenth of the checks
    per_slice = [sum(1 for p in phases if k <= p < k + 1) for k in range(10)]
    assert min(per_slice) > 15 and max(per_slice) < 45, per_slice
    assert phase_of("check-1", interval) == phase_of("check-1", interval)  # stable
