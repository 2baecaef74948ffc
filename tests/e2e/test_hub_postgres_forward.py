"""Forwarding from a PostgreSQL store (issue 15, items 1 and 2 together):
two real hubs on one real PostgreSQL, both configured with the same
`[[hub.forward]]` into a real VictoriaMetrics. Batches go to both hubs
alternately; one hub sends the forward at a time (the forward's advisory
lock), the other stands by. The leading hub is killed with SIGKILL in the
middle of the backlog: the other takes the forward over from the shared
cursors. VictoriaMetrics' /api/v1/export (which shows duplicates) holds
every stored sample, and at most the one send in flight at the kill twice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench.tsdb import VICTORIA
from tests.conftest import wait_for
from tests.e2e.test_hub_forward import (  # noqa: F401 - vm: a fixture
    exported,
    figures,
    forward_table,
    sent_labels,
    vm,
)
from tests.e2e.test_hub_postgres import SECRET, Hub, batch

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists(VICTORIA), reason="victoria-metrics missing"),
]

PER_SEND = 20  # max_samples_per_send: the most a SIGKILL may repeat


def leading(hub: Hub) -> bool:
    return figures(hub).get('vigil_hub_forward_leading{forward="tsdb"}') == 1.0


def sent(hub: Hub) -> float:
    return figures(hub).get('vigil_hub_forward_sent_samples_total{forward="tsdb"}', 0.0)


def with_forward(hub: Hub, url: str) -> Hub:
    hub.config.write_text(
        hub.config.read_text() + forward_table(url, extra=f"max_samples_per_send = {PER_SEND}\n")
    )
    return hub


def pushed_samples(pushed: list[tuple[str, int, int, float]]) -> dict[str, set[tuple[int, float]]]:
    """The metric records of the batches pushed, as VictoriaMetrics should hold them."""
    out: dict[str, set[tuple[int, float]]] = {}
    for host, first, n, base in pushed:
        for seq in range(first, first + n):
            if seq % 10:  # batch(): every 10th record is a log event
                key = json.dumps(sent_labels(host, "m", {"k": str(seq % 7)}), sort_keys=True)
                out.setdefault(key, set()).add((round((base + seq * 0.01) * 1000), float(seq)))
    return out


def test_two_hubs_on_postgres_forward_once_and_the_other_takes_over(tmp_path: Path, pg_server, vm):  # noqa: F811
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    dsn = pg_server.database()
    a = with_forward(Hub(tmp_path, "a", dsn), vm.write_url)
    b = with_forward(Hub(tmp_path, "b", dsn), vm.write_url)
    pushed: list[tuple[str, int, int, float]] = []
    nexts: dict[str, int] = {}
    base = time.time() - 3600

    def push(hub: Hub, host: str, n: int = 50) -> None:
        first = nexts.get(host, 1)
        status, answer = hub.post(batch(host, first, n, base), host)
        assert status == 200 and answer["last_seq"] == first + n - 1, answer
        nexts[host] = first + n
        pushed.append((host, first, n, base))

    try:
        a.start()
        wait_for(lambda: leading(a), 30, "hub a leading the forward")
        b.start()
        # the receiver down while the backlog is made: the forward is mid-way when a dies
        vm.stop()
        for i in range(40):
            push((a, b)[i % 2], f"web-{i % 3:02d}")
        assert leading(a) and not leading(b)  # b stands by
        vm.start()
        wait_for(lambda: sent(a) >= 200, 60, "hub a forwarding the backlog")
        a.kill()
        wait_for(lambda: leading(b), 60, "hub b taking the forward over")
        for i in range(10):  # the agents go on through b
            push(b, f"web-{i % 3:02d}")
        a.start()  # back: it stands by while b leads
        expected = pushed_samples(pushed)
        total = sum(map(len, expected.values()))

        def delivered() -> dict[str, list[tuple[int, float]]] | None:
            got = exported(vm)
            distinct = sum(len(set(v)) for v in got.values())
            return (
                got
                if distinct >= total
                and figures(b).get('vigil_hub_forward_lag_seconds{forward="tsdb"}') == 0
                else None
            )

        got = wait_for(delivered, 120, "every sample in VictoriaMetrics")
        assert not leading(a) and leading(b)
        assert {k: set(v) for k, v in got.items()} == expected  # none missing, none foreign
        samples = sum(map(len, got.values()))
        twice = samples - total
        # at least once: at most the send in flight when a was killed, again
        assert 0 <= twice <= PER_SEND, twice
        print(f"two hubs, leader SIGKILLed: {total} samples, {twice} stored twice")
        assert sent(b) > 0 and "forward_leading" in b.log()
        assert a.proc is not None and a.proc.poll() is None
    finally:
        a.stop()
        b.stop()
