"""The conftest's blocking-call check is live: vigil code that touches the
disk from a running event loop fails the test that drives it."""

import asyncio

import pytest
from blockbuster import BlockingError

from agent.core import statedir


def test_blocking_call_on_the_loop_is_caught(tmp_path):
    async def on_the_loop():
        statedir.prepare(tmp_path / "state")  # mkdir + stat: blocking I/O

    with pytest.raises(BlockingError):
        asyncio.run(on_the_loop())


def test_same_call_off_the_loop_is_fine(tmp_path):
    async def in_a_thread():
        await asyncio.to_thread(statedir.prepare, tmp_path / "state")

    asyncio.run(in_a_thread())
    assert (tmp_path / "state").is_dir()
