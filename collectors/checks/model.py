"""What one attempt of a check found (`Outcome`), what a probe is given
(`ProbeContext`), and the Nagios perfdata it may carry (`Perf`).

Every check type's config class has an async `probe(ctx) -> Outcome`
(http.py, tcp.py, dns.py, tls.py, command.py). A probe never raises for
a failing target: a refused connection, a timeout, a wrong status are an
Outcome with ok=False and the reason in `message`. It returns within
the check's `timeout` (the runner adds a hard stop a little later as a safety net).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Status = Literal["ok", "warning", "critical", "unknown"]
# The Nagios plugin exit codes, which `check_status` reports.
STATUS_CODES: Mapping[Status, int] = MappingProxyType(
    {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
)


@dataclass(frozen=True)
class Perf:
    """One perfdata item: 'label'=value[UOM];[warn];[crit];[min];[max].

    `value` is in base units (seconds for s/ms/us, bytes for B/KB/MB/GB/TB,
    percent stays percent, c is a counter); `unit` is the base unit ("s",
    "bytes", "percent", "counter" or ""). warn/crit are the upper end of a
    simple threshold ("80" or "10:80"), None if absent or not a plain range.
    """

    label: str
    value: float
    unit: str = ""
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: Status  # ok, or why not: warning (e.g. over max_latency), critical, unknown
    message: str  # an error text, or a plugin's first line; "" when there is nothing to say
    latency: float  # seconds the attempt took
    status_code: int | None = None  # http: the final response's status
    cert_expiry_days: float | None = None  # days until the presented certificate expires
    cert: Mapping[str, str] = field(default_factory=dict)  # issuer, subject, not_after (ISO)
    perf: tuple[Perf, ...] = ()  # command: the plugin's perfdata


class ProbeContext:
    """What probes share: a bound on the connections http checks have open
    at once (`limit`), so a host with many checks due together does not
    run out of descriptors or flood one server."""

    def __init__(self, limit: int = 100) -> None:
        self.connections = asyncio.Semaphore(limit)
