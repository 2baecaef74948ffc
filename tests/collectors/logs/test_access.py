"""Access-log lines as nginx and Apache write them (collectors/logs/access.py):
parsed with literal inputs, then 10,000 generated requests whose counts
must be exact and whose quantiles within 1 % of the exact ones."""

from __future__ import annotations

import math
import random

import pytest

from collectors.logs.access import (
    MAX_VHOSTS,
    OTHER_VHOST,
    AccessMetrics,
    Request,
    compile_format,
    parse,
)

NGINX = compile_format("nginx_combined")
APACHE = compile_format("apache_combined")

COMBINED = (
    b'203.0.113.9 - alice [29/Nov/2026:07:00:01 +0000] "GET /a?b=1 HTTP/1.1" 200 612'
    b' "https://example.com/" "curl/8.5.0"'
)


@pytest.mark.parametrize(
    ("pattern", "line", "want"),
    [
        (NGINX, COMBINED, Request("2xx", 612, None, "")),
        (NGINX, COMBINED + b" 0.005", Request("2xx", 612, 0.005, "")),
        (NGINX, COMBINED + b" 0.250 0.249", Request("2xx", 612, 0.25, "")),
        (NGINX, COMBINED + b" 1.000 0.5, 0.4 : 0.1", Request("2xx", 612, 1.0, "")),
        (NGINX, COMBINED + b" 0.010 -", Request("2xx", 612, 0.01, "")),
        (
            NGINX,
            b"shop.example:443 " + COMBINED + b" 0.1",
            Request("2xx", 612, 0.1, "shop.example"),
        ),
        (
            NGINX,
            b'::1 - - [29/Nov/2026:07:00:01 +0000] "GET / HTTP/1.1" 499 0 "-" "-" 2.5',
            Request("4xx", 0, 2.5, ""),
        ),
        (  # nginx writes a quote in the request as \x22, Apache as \"
            NGINX,
            b'1.2.3.4 - - [29/Nov/2026:07:00:01 +0000] "GET /\\"x\\x22 HTTP/1.1" 503 - "-" "a b"',
            Request("5xx", 0, None, ""),
        ),
        (APACHE, COMBINED + b" 2500", Request("2xx", 612, 0.0025, "")),
        (  # common log format: no referer, no user agent
            APACHE,
            b'10.0.0.1 - - [29/Nov/2026:07:00:01 +0100] "POST /login HTTP/1.0" 302 -',
            Request("3xx", 0, None, ""),
        ),
        (APACHE, b"www.example.org:80 " + COMBINED, Request("2xx", 612, None, "www.example.org")),
        (  # nginx's own default `main`: $http_x_forwarded_for last
            NGINX,
            COMBINED + b' "198.51.100.7"',
            Request("2xx", 612, None, ""),
        ),
        (
            NGINX,
            b"[2001:db8::5]:80 " + COMBINED + b" 0.2",
            Request("2xx", 612, 0.2, "[2001:db8::5]"),
        ),
        (NGINX, b"", None),
        (NGINX, b"Nov 29 07:00:01 host sshd[1]: Accepted publickey", None),
        (NGINX, COMBINED.replace(b" 200 ", b" 999 "), None),
        (NGINX, COMBINED.replace(b" 612 ", b" " + b"9" * 30 + b" "), None),  # past 64 bits
        (NGINX, COMBINED + b" " + b"9" * 400, None),  # a duration float() makes inf
        (NGINX, b"h" * 300 + b" " + COMBINED, None),  # no host name is that long
    ],
)
def test_lines_as_the_servers_write_them(pattern, line, want):
    assert parse(pattern, line) == want


def test_a_regex_of_the_operators_names_its_fields():
    pattern = compile_format(
        "regex", r"^(?P<vhost>\S+) (?P<status>\d{3}) (?P<bytes>\d+) (?P<milliseconds>\d+)ms$"
    )
    assert parse(pattern, b"api 201 17 250ms") == Request("2xx", 17, 0.25, "api")
    assert parse(pattern, b"api 201 17") is None


def _line(rng: random.Random) -> tuple[bytes, int, int, float]:
    status = rng.choices([200, 204, 301, 404, 500, 503], [70, 5, 5, 10, 7, 3])[0]
    size = rng.randrange(0, 50_000)
    seconds = round(rng.lognormvariate(-3, 1.2), 3)  # nginx prints milliseconds
    line = (
        f'198.51.100.{rng.randrange(256)} - - [29/Nov/2026:07:00:01 +0000] "GET /p/'
        f'{rng.randrange(1000)} HTTP/1.1" {status} {size} "-" "bench" {seconds:.3f}'
    ).encode()
    return line, status, size, seconds


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_ten_thousand_requests_counted_exactly_quantiles_within_one_percent():
    rng = random.Random(18)
    counts: dict = {}
    unparsed: dict = {}
    metrics = AccessMetrics(NGINX, 300.0, counts, unparsed)
    lines, statuses, sizes, durations = [], {}, 0, []
    for _ in range(10_000):
        line, status, size, seconds = _line(rng)
        lines.append(line)
        statuses[f"{status // 100}xx"] = statuses.get(f"{status // 100}xx", 0) + 1
        sizes += size
        durations.append(seconds)
    data = b"\n".join(lines) + b"\ngarbage line\n"
    for start in range(0, len(lines), 1000):  # in chunks, as the tailer reads
        chunk = b"\n".join(lines[start : start + 1000]) + b"\n"
        metrics.observe("/var/log/nginx/access.log", chunk, 1_800_000_000.0)
    metrics.observe("/var/log/nginx/access.log", b"garbage line\n", 1_800_000_000.0)
    assert data.count(b"\n") == 10_001
    assert {c: n for (_, _, c), (n, _) in counts.items()} == statuses
    assert sum(b for (_, _, _), (_, b) in counts.items()) == sizes
    assert unparsed == {"/var/log/nginx/access.log": 1}
    ((label, vhost, quantiles),) = metrics.quantiles(1_800_000_010.0, (0.5, 0.9, 0.95, 0.99))
    assert (label, vhost) == ("/var/log/nginx/access.log", "")
    for q, got in quantiles.items():
        exact = _nearest_rank(durations, q)
        assert abs(got - exact) <= 0.01 * exact, (q, got, exact)
    # the window slides: five minutes later, nothing is left in it
    assert metrics.quantiles(1_800_000_000.0 + 301, (0.5,)) == []


def test_a_client_chosen_host_cannot_make_series_without_end():
    counts: dict = {}
    metrics = AccessMetrics(NGINX, 300.0, counts, {})
    chunk = b"".join(b"v%d.example " % i + COMBINED + b"\n" for i in range(MAX_VHOSTS + 50))
    metrics.observe("/a.log", chunk, 0.0)
    vhosts = {v for (_, v, _) in counts}
    assert len(vhosts) == MAX_VHOSTS + 1 and OTHER_VHOST in vhosts
    assert counts[("/a.log", OTHER_VHOST, "2xx")][0] == 50


def test_a_bytes_sum_past_64_bits_stays_encodable():
    """The second read: 20,000 lines of a petabyte each took the sum past
    2**64, msgpack refused every commit of the log state after it, and all
    log reading stopped for good."""
    import msgpack

    counts: dict = {}
    metrics = AccessMetrics(NGINX, 300.0, counts, {})
    line = COMBINED.replace(b" 612 ", b" 1000000000000000 ")
    metrics.observe("/a.log", (line + b"\n") * 20_000, 0.0)
    ((n, sent),) = counts.values()
    assert n == 20_000 and sent == 2e19
    msgpack.packb([[*k, *v] for k, v in counts.items()])
