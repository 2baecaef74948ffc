from collectors.rates import RateTracker


def test_first_step_gives_no_rate_then_rates_per_second():
    t = RateTracker()
    assert t.step(100.0, {"a": 1000}) == {}
    assert t.step(110.0, {"a": 1500}) == {"a": 50.0}


def test_counter_reset_gives_no_rate_for_that_interval_only():
    t = RateTracker()
    t.step(0.0, {"a": 5000})
    assert t.step(10.0, {"a": 100}) == {}  # reset (or wrap): nothing, never negative
    assert t.step(20.0, {"a": 300}) == {"a": 20.0}


def test_32bit_wrap_is_not_reported_as_a_huge_or_negative_rate():
    t = RateTracker()
    t.step(0.0, {"rx": 2**32 - 1000})
    rates = t.step(10.0, {"rx": 500})
    assert rates == {}
    assert t.step(20.0, {"rx": 1500}) == {"rx": 100.0}


def test_series_that_vanishes_is_forgotten_and_reappearing_starts_fresh():
    t = RateTracker()
    t.step(0.0, {"eth0": 100, "eth1": 100})
    assert t.step(10.0, {"eth0": 200}) == {"eth0": 10.0}
    # eth1 comes back with a lower counter: no rate from the stale value
    assert t.step(20.0, {"eth0": 300, "eth1": 50}) == {"eth0": 10.0}
    assert t.step(30.0, {"eth0": 300, "eth1": 150}) == {"eth0": 0.0, "eth1": 10.0}


def test_no_time_elapsed_gives_no_rate():
    t = RateTracker()
    t.step(5.0, {"a": 1})
    assert t.step(5.0, {"a": 2}) == {}
