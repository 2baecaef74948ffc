"""PROBES: the probe function of each check type (config.TYPES)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from collectors.checks import command, dns, http, tcp, tls
from collectors.checks.config import CheckConfig
from collectors.checks.model import Outcome, ProbeContext

PROBES: dict[str, Callable[[CheckConfig, ProbeContext], Awaitable[Outcome]]] = {
    "http": http.probe,
    "tcp": tcp.probe,
    "dns": dns.probe,
    "tls": tls.probe,
    "command": command.probe,
}
