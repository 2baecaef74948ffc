import email.utils
import random
import time

import pytest

from agent.core.retry import full_jitter, retry_after


def test_retry_after_seconds_and_http_dates():
    assert retry_after("120") == 120.0
    assert retry_after(None) is None and retry_after("") is None and retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after(later) == pytest.approx(30, abs=2)
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after(past) == 0.0


def test_full_jitter_stays_within_the_growing_cap():
    rng = random.Random(1)
    for attempt in range(1, 40):
        bound = min(60.0, 2.0**attempt)
        waits = [full_jitter(attempt, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= w <= bound for w in waits)
        assert max(waits) > bound / 2  # spread over the range, not stuck low
