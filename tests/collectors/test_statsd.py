"""StatsD lines as clients send them (collectors/statsd.py), literal."""

from __future__ import annotations

from collectors.statsd import Statsd


def flushed(state: Statsd) -> dict[tuple[str, frozenset], float]:
    return {(r.name, frozenset(r.labels.items())): r.value for r in state.flush(1.0)}


def test_counters_gauges_sets_and_tags():
    state = Statsd(max_keys=100)
    state.feed(
        b"api.requests:1|c\napi.requests:2|c|@0.5\n"  # 1 + 2 / 0.5
        b"queue.depth:10|g\nqueue.depth:-3|g\nqueue.depth:+1|g\n"
        b"users:alice|s\nusers:bob|s\nusers:alice|s\n"
        b"hits:1|c|#env:prod,region:eu-1,canary\n"
    )
    got = flushed(state)
    assert got[("api_requests", frozenset())] == 5.0
    assert got[("queue_depth", frozenset())] == 8.0
    assert got[("users", frozenset())] == 2.0
    assert got[("hits", frozenset({("env", "prod"), ("region", "eu-1")}))] == 1.0
    assert got[("statsd_dropped_total", frozenset({("reason", "invalid")}))] == 0
    # a set counts per interval; a counter carries on
    state.feed(b"users:carol|s\napi.requests:1|c\n")
    got = flushed(state)
    assert got[("users", frozenset())] == 1.0 and got[("api_requests", frozenset())] == 6.0


def test_timers_are_seconds_with_quantiles_count_and_sum():
    state = Statsd(max_keys=100)
    state.feed(b"".join(b"db.query:%d|ms\n" % v for v in range(1, 101)))
    got = flushed(state)
    assert got[("db_query_count", frozenset())] == 100
    assert abs(got[("db_query_sum", frozenset())] - 5.05) < 1e-9
    p50 = got[("db_query", frozenset({("quantile", "0.5")}))]
    assert abs(p50 - 0.050) <= 0.0005
    # the next interval has no timings: no quantiles, the totals stay
    got = flushed(state)
    assert ("db_query", frozenset({("quantile", "0.5")})) not in got
    assert got[("db_query_count", frozenset())] == 100


def test_what_does_not_parse_or_does_not_fit_is_counted_not_kept():
    state = Statsd(max_keys=2)
    state.feed(
        b"ok:1|c\nno_type:1\n:1|c\nbad:x|c\nbad:1|zz\nneg:-1|ms\nrate:1|c|@2\n"
        b"huge:1e400|g\nnan:nan|g\nsecond:1|c\nthird:1|c\nok:1|g\n"
    )
    got = flushed(state)
    invalid = got[("statsd_dropped_total", frozenset({("reason", "invalid")}))]
    full = got[("statsd_dropped_total", frozenset({("reason", "max_keys")}))]
    # no_type, :1, bad x2, neg, rate, huge, nan (inf/nan refused), ok as a gauge
    assert (invalid, full) == (9, 1)
    assert got[("statsd_keys", frozenset())] == 2
    assert got[("statsd_lines_total", frozenset())] == 12


def test_a_name_the_hub_would_refuse_is_invalid_not_a_lost_batch():
    state = Statsd(max_keys=100)
    state.feed(b"x" * 201 + b":1|c\nok:1|c\n")
    got = flushed(state)
    assert ("ok", frozenset()) in got and ("x" * 201, frozenset()) not in got
    assert got[("statsd_dropped_total", frozenset({("reason", "invalid")}))] == 1


def test_a_reload_keeps_the_server_only_while_its_flush_interval_stays():
    """Found in the reread: a kept StatsD service scheduled its flush from
    the configuration it started with, so an [agent] interval changed by
    a reload never reached it."""
    import dataclasses

    from agent.config import Config
    from agent.services import StatsdService
    from collectors.statsd import StatsdSection

    config = Config(statsd=StatsdSection(listen="127.0.0.1:8125"))
    service = StatsdService(config)
    assert service.keeps_running(dataclasses.replace(config))
    faster = dataclasses.replace(config, agent=dataclasses.replace(config.agent, interval=5.0))
    assert not service.keeps_running(faster)
    pinned = dataclasses.replace(
        config, statsd=StatsdSection(listen="127.0.0.1:8125", interval=10.0)
    )
    assert StatsdService(pinned).keeps_running(
        dataclasses.replace(pinned, agent=dataclasses.replace(pinned.agent, interval=5.0))
    )
