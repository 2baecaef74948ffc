"""The one retry policy for everything that talks to a server (the shipper,
remote notifiers): exponential backoff with full jitter, and the server's
Retry-After honoured."""

from __future__ import annotations

import random
import time


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    import email.utils  # HTTP dates are rare; most servers send seconds

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def full_jitter(attempt: int, cap: float, rng: random.Random) -> float:
    """A wait before retry number `attempt`: uniform up to min(cap, 2^attempt s)."""
    return rng.uniform(0.0, min(cap, 2.0 ** min(attempt, 30)))
