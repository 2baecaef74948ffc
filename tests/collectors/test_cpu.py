import pytest

from collectors.cpu import CpuCollector
from tests.collectors.fakes import RecordedSource, by_key


def times(user, system, idle, iowait=0.0, steal=0.0, nice=0.0, irq=0.0, softirq=0.0):
    return {
        "user": user,
        "nice": nice,
        "system": system,
        "idle": idle,
        "iowait": iowait,
        "irq": irq,
        "softirq": softirq,
        "steal": steal,
    }


def run(steps):
    src = RecordedSource(cpu_times=steps)
    c = CpuCollector(src)
    out = []
    for i in range(len(steps)):
        out.append(by_key(c.collect(1000.0 + i, float(i))))
        src.step()
    return out


def test_first_sample_has_only_the_cpu_count():
    [first] = run([{"all": times(1, 1, 1), "0": times(1, 1, 1)}])
    assert first == {("cpus_online", ()): 1}


def test_usage_and_modes_over_one_interval():
    _, second = run(
        [
            {"all": times(100, 50, 800, iowait=50), "0": times(100, 50, 800, iowait=50)},
            # +30 user, +10 system, +40 idle, +10 iowait, +10 steal = 100 ticks
            {"all": times(130, 60, 840, iowait=60, steal=10), "0": times(130, 60, 840, 60, 10)},
        ]
    )
    assert second[("cpu_usage_percent", (("cpu", "all"),))] == pytest.approx(50.0)
    assert second[("cpu_mode_percent", (("cpu", "all"), ("mode", "user")))] == pytest.approx(30.0)
    assert second[("cpu_mode_percent", (("cpu", "all"), ("mode", "iowait")))] == pytest.approx(10.0)
    assert second[("cpu_mode_percent", (("cpu", "all"), ("mode", "steal")))] == pytest.approx(10.0)
    assert second[("cpu_mode_percent", (("cpu", "0"), ("mode", "idle")))] == pytest.approx(40.0)


def test_iowait_going_backwards_counts_as_zero_not_negative():
    _, second = run(
        [
            {"all": times(100, 100, 100, iowait=50)},
            {"all": times(150, 100, 150, iowait=45)},  # kernel iowait decreased by 5
        ]
    )
    assert second[("cpu_mode_percent", (("cpu", "all"), ("mode", "iowait")))] == 0.0
    assert second[("cpu_usage_percent", (("cpu", "all"),))] == pytest.approx(50.0)
    assert all(v >= 0 for v in second.values())


def test_cpu_that_disappears_and_returns_with_reset_counters():
    steps = [
        {"all": times(10, 10, 80), "0": times(5, 5, 40), "1": times(5, 5, 40)},
        {"all": times(20, 20, 160), "0": times(10, 10, 80)},  # CPU 1 offlined
        {"all": times(30, 30, 240), "0": times(15, 15, 120), "1": times(1, 1, 2)},  # back, reset
        {"all": times(40, 40, 320), "0": times(20, 20, 160), "1": times(2, 2, 4)},
    ]
    out = run(steps)
    assert ("cpu_usage_percent", (("cpu", "1"),)) not in out[1]
    assert out[1][("cpus_online", ())] == 1
    assert ("cpu_usage_percent", (("cpu", "1"),)) not in out[2]  # first sample after return
    assert out[3][("cpu_usage_percent", (("cpu", "1"),))] == pytest.approx(50.0)
    for step in out:
        assert all(0.0 <= v <= 100.0 for (name, _), v in step.items() if name != "cpus_online")


def test_total_going_backwards_gives_nothing_for_that_cpu():
    _, second = run([{"all": times(100, 100, 100)}, {"all": times(10, 10, 10)}])
    assert second == {("cpus_online", ()): 0}
