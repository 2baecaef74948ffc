"""Issue 18: a StatsD client (plain UDP datagrams, as the protocol says)
sending 10,000 timings with known values to the real agent: each quantile
it reports is within 1 % of the exact one; counters and tags arrive."""

from __future__ import annotations

import math
import random
import socket
import time

from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port
from tests.e2e.test_access_logs import samples


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_ten_thousand_timings_give_quantiles_within_one_percent(tmp_path):
    udp, api = free_udp_port(), free_port()
    agent = Agent(
        tmp_path,
        agent_config(
            tmp_path, f'[statsd]\nlisten = "127.0.0.1:{udp}"\ninterval = "2s"\n', port=api
        ),
    )
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    def send(lines: list[str]) -> None:
        for start in range(0, len(lines), 50):  # 50 lines a datagram, under 1500 bytes
            client.sendto("\n".join(lines[start : start + 50]).encode(), ("127.0.0.1", udp))
            time.sleep(0.001)  # a client's pace, not a burst past the socket's buffer

    count = frozenset({("route", "checkout")})

    def counted() -> float | None:
        return samples(api, "api_latency_count").get(count)

    try:
        agent.notify.wait("READY=1")
        # one timing, and its flush: the next interval starts now, and the
        # 10,000 that follow take well under its 2 s
        send(["api.latency:1|ms|#route:checkout"])
        wait_for(lambda: counted() == 1.0, 30, "the first flush")
        rng = random.Random(18)
        timings = [round(rng.lognormvariate(3, 1), 3) for _ in range(10_000)]  # ms
        send([f"api.latency:{t}|ms|#route:checkout" for t in timings])
        send(["orders.placed:3|c", "orders.placed:2|c|#shop:eu"])
        wait_for(lambda: counted() == 10_001.0, 30, "the 10,000 timings")
        quantiles = {
            dict(labels)["quantile"]: value
            for labels, value in samples(api, "api_latency").items()
            if ("route", "checkout") in labels
        }
        assert set(quantiles) == {"0.5", "0.9", "0.95", "0.99"}
        for q, got in quantiles.items():
            exact = nearest_rank(timings, float(q)) / 1000  # seconds
            assert abs(got - exact) <= 0.01 * exact, (q, got, exact)
        placed = samples(api, "orders_placed")
        assert placed == {frozenset(): 3.0, frozenset({("shop", "eu")}): 2.0}
        dropped = samples(api, "statsd_dropped_total")
        assert set(dropped.values()) == {0.0}
    finally:
        client.close()
        assert agent.stop() == 0
