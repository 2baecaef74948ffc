#!/usr/bin/env python3
"""A legitimate agent's delivery latency while another host attacks the hub
with what issue 13 (items 3, 5, 6, 7, 8) found: batches the store could not
take, clocks in 2100, NaN floods, forged non-ASCII tokens, a series flood.

Starts the real `vigil hub run` on loopback (default limits), then for each
phase: the legitimate client POSTs one real batch (one collection cycle of
this host, msgpack + zstd, as the shipper sends it) every 50 ms for
`--seconds`, measuring POST -> 200, while `--attackers` threads send the
phase's hostile requests as fast as they can. Prints median, p99 and max
per phase and the ratio to the quiet baseline, and what the attackers got.

    .venv/bin/python -m bench.hub_hostile [--seconds 5] [--attackers 2]

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgpack

from agent.core import protocol
from bench.buffer import one_cycle_of_records
from bench.common import percentile, start_hub, wait_healthy
from hub.auth import host_token

Attack = Callable[[int], tuple[bytes, str]]  # n -> (body, Authorization)


def post(url: str, body: bytes, authorization: str) -> int:
    request = urllib.request.Request(
        url + "/v1/ingest",
        data=body,
        headers={"Authorization": authorization, "Content-Encoding": "zstd"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def batch(host: str, stream: str, first: int, records: list, last: int | None = None) -> bytes:
    body = {
        "v": 1,
        "host": host,
        "stream": stream,
        "first": first,
        "last": first + len(records) - 1 if last is None else last,
        "agent": "bench",
        "sent": time.time(),
        "records": records,
    }
    packed = msgpack.packb(body, use_bin_type=True)
    nested = b"\x81\xa1k\x91" * 495 + msgpack.packb("x")  # 990 levels: beyond msgpack's packer
    return protocol.compress(packed.replace(msgpack.packb("DEEP"), nested))


def attacks(secret: bytes) -> dict[str, Attack]:
    bearer = f"Bearer {host_token('evil-01', secret)}"

    def event(**over: object) -> dict:
        return {"kind": "event", "type": "log", "ts": time.time(), "line": "x", **over}

    def poison(n: int) -> tuple[bytes, str]:
        kinds = [
            [event(fields="DEEP")],
            [event(ts=2**63)],
            [event(fields={b"k": 1})],
            [event(line="é" * (2**20 + 1))],
        ]
        return batch("evil-01", "a" * 32, 1, kinds[n % len(kinds)]), bearer

    def future(n: int) -> tuple[bytes, str]:
        records = [event(ts=4102444800.0, n=i) for i in range(1000)]
        return batch("evil-01", "b" * 32, 1 + 1000 * n, records), bearer

    def nan(n: int) -> tuple[bytes, str]:
        records = [
            {"kind": "metric", "name": "odd", "labels": {}, "ts": time.time(), "value": v}
            for v in (float("nan"), float("inf")) * 500
        ]
        return batch("evil-01", "c" * 32, 1 + 1000 * n, records), bearer

    def forged(n: int) -> tuple[bytes, str]:
        return batch("evil-01", "d" * 32, 1, [event()]), "Bearer é.00".encode().decode("latin-1")

    def cardinality(n: int) -> tuple[bytes, str]:
        records = [
            {"kind": "metric", "name": "card", "labels": {"i": f"{n}-{i}"}, "ts": time.time(),
             "value": 1.0}
            for i in range(5000)
        ]  # fmt: skip
        return batch("evil-01", "e" * 32, 1 + 5000 * n, records), bearer

    return {
        "400s: deep, 2**63, bytes keys, 1 MiB+": poison,
        "1,000 events dated 2100 a batch": future,
        "1,000 NaN/Inf samples a batch": nan,
        "forged non-ASCII tokens": forged,
        "5,000 new series a batch": cardinality,
    }


def phase(url: str, good: Callable[[int], bytes], token: str, seconds: float,
          attack: Attack | None, attackers: int) -> tuple[list[float], Counter[int]]:  # fmt: skip
    stop = threading.Event()
    answers: Counter[int] = Counter()

    def attacker(k: int) -> None:
        n = k
        while not stop.is_set():
            assert attack is not None
            answers[post(url, *attack(n))] += 1
            n += attackers

    threads = [
        threading.Thread(target=attacker, args=(k,)) for k in range(attackers if attack else 0)
    ]
    for t in threads:
        t.start()
    latencies, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        body = good(len(latencies))
        start = time.monotonic()
        status = post(url, body, token)
        latencies.append(time.monotonic() - start if status == 200 else float("inf"))
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    return sorted(latencies), answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--attackers", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-hostile-"))
    hub, url = start_hub(tmp)
    cycle = one_cycle_of_records()
    stream = secrets.token_hex(16)
    try:
        wait_healthy(url, hub)
        secret = (tmp / "hub.secret").read_bytes().strip()
        token = f"Bearer {host_token('web-01', secret)}"
        seq = [1]

        def good(_: int) -> bytes:
            now = time.time()
            body = protocol.encode_batch(
                "web-01", stream, seq[0], [dict(r, ts=now) for r in cycle], "bench", now
            )
            seq[0] += len(cycle)
            return protocol.compress(body)

        rows = [("quiet (baseline)", *phase(url, good, token, args.seconds, None, 0))]
        for name, attack in attacks(secret).items():
            rows.append((name, *phase(url, good, token, args.seconds, attack, args.attackers)))
    finally:
        hub.terminate()
        hub.wait(30)
    base = percentile(rows[0][1], 0.5)
    print(
        f"legitimate agent: one batch of {len(cycle)} records every 50 ms;"
        f" {args.attackers} attacker threads"
    )
    print(f"{'phase':40} {'sent':>5} {'failed':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}"
          f" {'x base':>7}  attackers got")  # fmt: skip
    for name, lat, answers in rows:
        ok = [x for x in lat if x != float("inf")]
        med = percentile(ok, 0.5)
        got = ", ".join(f"{code or 'error'}: {n}" for code, n in sorted(answers.items()))
        print(
            f"{name:40} {len(lat):5} {len(lat) - len(ok):6} {med * 1000:10.1f}"
            f" {percentile(ok, 0.99) * 1000:8.1f} {max(ok, default=0) * 1000:8.1f}"
            f" {med / base:7.2f}  {got or '-'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
