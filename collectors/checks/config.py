"""The `[[checks]]` tables: one synthetic check each. Every key is documented
in docs/checks.md and docs/configuration.md.

`CheckConfig` holds the keys every check has; each check type is a
`CheckConfig` subclass in its own module (http.py, tcp.py, ...) with its
keys, its checks and its `probe`, registered in CHECK_TYPES with
`@CHECK_TYPES.register("name")`. The `type` key of a table picks the
class (agent/config.py), so a key set for a type that does not use it is
an error, not silently ignored (a `body_contains` on a tcp check would
never be checked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.core.registry import Registry
from agent.core.schema import Duration, Invalid, check_identifier, opt
from collectors.checks.model import Outcome, ProbeContext

DEFAULT_TIMEOUT = 10.0
CHECK_TYPES: Registry[type[CheckConfig]] = Registry("check type", lambda cls: cls)


def _check_label(value: dict[str, str]) -> str | None:
    reserved = {"check", "type", "window", "quantile"}
    for key in value:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key):
            return f"label name {key!r}: letters, digits and _ only, not starting with a digit"
        if key in reserved:
            return f"label name {key!r} is set by the agent"
    return None


def split_address(value: str) -> tuple[str, int] | None:
    """ "host:port" or "[v6]:port" -> (host, port); None if malformed."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\s\[\]]+):(\d{1,5})", value)
    if not m:
        return None
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    return (host, port) if 0 < port < 65536 else None


def host_port(address: str) -> tuple[str, int]:
    """A validated `address`, split."""
    parsed = split_address(address)
    assert parsed is not None  # check_address passed
    return parsed


def check_address(value: str) -> str | None:
    """The `address` of the types that connect somewhere (tcp, tls)."""
    if split_address(value) is None:
        return f'expected "host:port" (IPv6 as "[::1]:443"), got {value!r}'
    return None


@dataclass(frozen=True, kw_only=True)
class CheckConfig:
    name: str = opt(check=check_identifier)
    type: str = opt()
    interval: Duration = opt(30.0, min=1.0)
    # per attempt; 0 (the default): 10 s, or the interval if shorter
    timeout: Duration = opt(0.0, min=0.0)
    labels: dict[str, str] = opt(factory=dict, check=_check_label)
    # Attempts after a failed one before the run counts as failed: a probe
    # that fails once then succeeds is OK (with 2 attempts recorded).
    retries: int = opt(1, min=0)
    retry_delay: Duration = opt(1.0, min=0.0)

    def __post_init__(self) -> None:
        if self.timeout == 0:
            object.__setattr__(self, "timeout", min(DEFAULT_TIMEOUT, self.interval))
        if self.timeout > self.interval:
            raise Invalid(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)",
                key="timeout",
            )

    async def probe(self, ctx: ProbeContext) -> Outcome:
        """One attempt at the target; model.py says what a probe promises."""
        raise NotImplementedError(f"check type {self.type!r} has no probe")
