#!/usr/bin/env python3
"""Alert rule evaluation cost: 100 rules over 2,000 series at a 10 s interval.

Child processes feed 2,000 series (values on a slow random walk, counters
rising) through the agent's alert engine on a simulated 10 s grid, for an
hour of samples so every window is full: one with no rules, then 100 rules
(thresholds, avg_over_time[5m], max_over_time[10m], predict_linear[15m],
rate[5m], increase[10m]) laid out two ways: each series selected by one
rule (100 metrics of 20 series), and by five (20 metrics of 100 series,
five times the evaluations). Each child prints its CPU time per cycle
(observe + the engine's tick) and its resident memory. Targets: under 5 ms
a cycle, under 5 MB more RSS.

Runs on this 2-core VM vary by +-20 %, and a neighbour's burst can double
one run: each layout runs three times, and the median is printed with the
range.

    .venv/bin/python -m bench.alerts

A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

SERIES = 2000
RULES = 100
INTERVAL = 10.0
CYCLES = 360  # an hour at 10 s: the longest window (1 h) is full
MEASURED = 60  # the last this many cycles are timed

# Five kinds of rule, 20 of each: gauges (threshold, averages, maxima, a fill
# forecast) and counters (rate, increase).
KINDS = (
    ("gauge", "{m} > 95"),
    ("gauge", "avg_over_time({m}[5m]) > 90"),
    ("gauge", "max_over_time({m}[10m]) > 99"),
    ("gauge", "predict_linear({m}[15m], 3600) > 100"),
    ("counter", "rate({m}[5m]) > 50"),
)


def layout(rules_per_series: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Metric names and rules: 2,000 series spread over RULES / rules_per_series
    metrics, each metric under `rules_per_series` rules."""
    metrics = RULES // rules_per_series
    names = []
    rules = []
    for m in range(metrics):
        kinds = [KINDS[(m + i) % len(KINDS)] for i in range(rules_per_series)]
        counter = any(k == "counter" for k, _ in kinds)
        name = f"bench_{m}_total" if counter else f"bench_{m}_percent"
        names.append(name)
        for i, (kind, expr) in enumerate(kinds):
            if kind == "gauge" and counter:
                expr = "increase({m}[10m]) > 10000"
            rules.append((f"Rule{m}_{i}", expr.format(m=name)))
    return names, rules


def child(rules_per_series: int) -> None:
    from agent.alerts.engine import AlertEngine, build_rule
    from agent.core import logsetup
    from agent.core.records import Metric

    logsetup.configure("error", "json")  # stdout carries the result
    rnd = random.Random(7)
    names, rules = layout(max(rules_per_series, 1))
    built = (
        [build_rule(n, e, 60.0, "", "medium", {}, "", 0.0, ()) for n, e in rules]
        if rules_per_series
        else []
    )
    engine = AlertEngine(built, "bench", None, lambda a, n: None, lambda e: None)
    per_metric = SERIES // len(names)
    labels = [{"instance": f"i{i}", "job": "bench"} for i in range(per_metric)]
    values = [[rnd.uniform(10, 60) for _ in labels] for _ in names]
    t0 = time.time() - CYCLES * INTERVAL
    cpu = 0.0
    evaluations = bounded = 0
    for cycle in range(CYCLES):
        now = t0 + cycle * INTERVAL
        batch = []
        for m, name in enumerate(names):
            row = values[m]
            counter = name.endswith("_total")
            for i, lab in enumerate(labels):
                if counter:
                    row[i] += rnd.uniform(0, 300)
                else:
                    row[i] = min(100.0, max(0.0, row[i] + rnd.uniform(-2, 2)))
                batch.append(Metric(name, row[i], now, lab))
        before, bounded_before = engine.evaluations, engine.bounded
        start = time.process_time()
        engine.observe(batch, now)
        engine.tick(now)  # the agent ticks every 5 s: at least once a cycle
        took = time.process_time() - start
        if cycle >= CYCLES - MEASURED:
            cpu += took
            evaluations += engine.evaluations - before
            bounded += engine.bounded - bounded_before
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    samples = sum(len(s.ts) for store in engine.series.values() for s in store.values())
    print(
        json.dumps(
            {
                "ms_per_cycle": 1000 * cpu / MEASURED,
                "rss": rss,
                "rules": len(built),
                "series": sum(len(store) for store in engine.series.values()),
                "samples_kept": samples,
                "evaluations_per_cycle": evaluations / MEASURED,
                "bounded_per_cycle": bounded / MEASURED,
                "firing": sum(1 for i in engine.instances.values() if i.state == "firing"),
            }
        )
    )


# Compound rules (docs/alerts.md): the default HTTPErrorRatioHigh and the
# playbook's cascade rule over a big access-log setup: 12 files x 100 vhosts
# x 4 status classes = 4,800 http_requests_total series, and 20 checks.
FILES, VHOSTS, CHECKS = 12, 100, 20
CASCADE = (
    '(rate(http_requests_total{status_class="5xx"}[5m]) / rate(http_requests_total[5m]) > 0.05)'
    " and on() (min_over_time(check_up[5m]) == 0)"
)


def compound_child() -> None:
    from agent.alerts.defaults import DEFAULT_ALERTS
    from agent.alerts.engine import AlertEngine, build_rule
    from agent.core import logsetup
    from agent.core.records import Metric

    logsetup.configure("error", "json")
    rnd = random.Random(7)
    ratio = next(r for r in DEFAULT_ALERTS if r.name == "HTTPErrorRatioHigh")
    built = [
        build_rule(ratio.name, ratio.expr, ratio.for_, ratio.clear, "high", {}, "", 0.0, ()),
        build_rule("Cascade", CASCADE, 0.0, "", "critical", {}, "", 0.0, ()),
    ]
    engine = AlertEngine(built, "bench", None, lambda a, n: None, lambda e: None)
    keys = [
        {"file": f"/var/log/nginx/site{f}.log", "vhost": f"v{v}.example.org", "status_class": c}
        for f in range(FILES)
        for v in range(VHOSTS)
        for c in ("2xx", "3xx", "4xx", "5xx")
    ]
    totals = [0.0] * len(keys)
    t0 = time.time() - CYCLES * INTERVAL
    cpu_observe = cpu_tick = 0.0
    for cycle in range(CYCLES):
        now = t0 + cycle * INTERVAL
        batch = []
        for i, labels in enumerate(keys):
            totals[i] += rnd.uniform(0, 20 if labels["status_class"] != "5xx" else 1)
            batch.append(Metric("http_requests_total", totals[i], now, labels, "counter"))
        checks = [Metric("check_up", 1.0, now + 0.1 * c, {"check": f"c{c}"}) for c in range(CHECKS)]
        start = time.process_time()
        engine.observe(batch, now)
        for check in checks:  # each check is a batch of its own
            engine.observe([check], check.ts)
        middle = time.process_time()
        engine.tick(now + 5)  # evaluate_every 5 s: two ticks a 10 s cycle
        engine.tick(now + 9.9)
        end = time.process_time()
        if cycle >= CYCLES - MEASURED:
            cpu_observe += middle - start
            cpu_tick += end - middle
    print(
        json.dumps(
            {
                "observe_ms": 1000 * cpu_observe / MEASURED,
                "tick_ms": 1000 * cpu_tick / MEASURED / 2,
                "series": len(keys) + CHECKS,
            }
        )
    )


RUNS = 3  # per layout: the median is quoted, with the range


def run_child(rules_per_series: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.alerts", "--child", str(rules_per_series)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    print(
        f"{SERIES:,} series, {RULES} rules, {INTERVAL:g} s interval, {CYCLES} cycles "
        f"(one hour), the last {MEASURED} timed; CPU is observe() + tick() per cycle, "
        f"the median of {RUNS} runs (range in brackets)"
    )
    without = run_child(0)
    print(f"{'':34} {'CPU/cycle':>24} {'RSS':>9} {'evals/cycle':>12} {'samples kept':>13}")
    row = "{:34} {:>24} {:6.1f} MB {:12,.0f} {:13,.0f}"
    base = without["ms_per_cycle"]
    print(row.format("no rules", f"{base:.2f} ms", without["rss"] / 1e6, 0, 0))
    for per in (1, 5):
        runs = sorted((run_child(per) for _ in range(RUNS)), key=lambda r: r["ms_per_cycle"])
        r = runs[len(runs) // 2]
        low, high = runs[0]["ms_per_cycle"], runs[-1]["ms_per_cycle"]
        cpu = f"{r['ms_per_cycle']:.2f} ms ({low:.1f}-{high:.1f})"
        name = f"{RULES} rules, each series under {per}"
        print(row.format(name, cpu, r["rss"] / 1e6, r["evaluations_per_cycle"], r["samples_kept"]))
        extra = (r["rss"] - without["rss"]) / 1e6
        print(
            f"  -> {r['ms_per_cycle'] - base:.2f} ms more CPU per cycle (target < 5 ms), "
            f"{extra:.1f} MB more RSS (target < 5 MB), "
            f"{r['firing']:.0f} alerts firing at the end; "
            f"{r['bounded_per_cycle'] / max(r['evaluations_per_cycle'], 1):.0%} of evaluations "
            "decided by a bound without reading the window"
        )


def compound() -> None:
    runs = []
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, "-m", "bench.alerts", "--compound-child"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["tick_ms"])
    r = runs[len(runs) // 2]
    print(
        f"compound rules (HTTPErrorRatioHigh and the cascade rule) over {r['series']:,} series: "
        f"{r['tick_ms']:.1f} ms CPU per evaluation at the tick "
        f"({runs[0]['tick_ms']:.1f}-{runs[-1]['tick_ms']:.1f}), two a 10 s cycle; "
        f"storing the samples {r['observe_ms']:.1f} ms a cycle; median of {RUNS} runs"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    elif sys.argv[1:] == ["--compound-child"]:
        compound_child()
    elif sys.argv[1:] == ["--compound"]:
        compound()
    else:
        main()
        compound()
