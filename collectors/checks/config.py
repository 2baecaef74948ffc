"""The `[[checks]]` tables: one synthetic check each. Every key is documented
in docs/checks.md and docs/configuration.md.

One flat table per check, whatever its type (as blackbox_exporter's
modules or Telegraf's inputs): the common keys, then the keys of its type.
A key set for a type that does not use it is an error, not silently
ignored (a `body_contains` on a tcp check would never be checked).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from agent.core.schema import Duration, Invalid, check_identifier, check_regex, opt

TYPES = ("http", "tcp", "dns", "tls", "command")
DEFAULT_TIMEOUT = 10.0

# The keys each type uses, beyond the common ones.
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "http": (
        "url",
        "method",
        "headers",
        "body",
        "body_json",
        "expect_status",
        "body_contains",
        "body_not_contains",
        "body_regex",
        "max_latency",
        "follow_redirects",
        "verify_tls",
        "ca_file",
    ),
    "tcp": ("address", "send", "expect", "tls", "verify_tls", "ca_file", "server_name"),
    "dns": ("query", "record", "expect_addresses"),
    "tls": ("address", "verify_tls", "ca_file", "server_name"),
    "command": ("command",),
}
COMMON_KEYS = ("name", "type", "interval", "timeout", "labels", "retries", "retry_delay")


def _check_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL with a host, got {value!r}"
    return None


def _check_address(value: str) -> str | None:
    if split_address(value) is None:
        return f'expected "host:port" (IPv6 as "[::1]:443"), got {value!r}'
    return None


def _check_status(value: int) -> str | None:
    return None if 100 <= value <= 599 else f"expected an HTTP status code 100-599, got {value}"


def _check_json(value: str) -> str | None:
    try:
        json.loads(value)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    return None


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


@dataclass(frozen=True)
class CheckConfig:
    name: str = opt(check=check_identifier)
    type: Literal["http", "tcp", "dns", "tls", "command"] = opt()
    interval: Duration = opt(30.0, min=1.0)
    # per attempt; 0 (the default): 10 s, or the interval if shorter
    timeout: Duration = opt(0.0, min=0.0)
    labels: dict[str, str] = opt(factory=dict, check=_check_label)
    # Attempts after a failed one before the run counts as failed: a probe
    # that fails once then succeeds is OK (with 2 attempts recorded).
    retries: int = opt(1, min=0)
    retry_delay: Duration = opt(1.0, min=0.0)

    # http
    url: str = opt("", check=lambda v: _check_url(v) if v else None)
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""  # sent as is
    body_json: str = opt("", check=lambda v: _check_json(v) if v else None)  # JSON text
    expect_status: tuple[int, ...] = opt((), each=_check_status)  # empty: any 2xx
    body_contains: str = ""
    body_not_contains: str = ""
    body_regex: str = opt("", check=lambda v: check_regex(v) if v else None)
    max_latency: Duration = opt(0.0, min=0.0)  # 0: no latency objective
    follow_redirects: bool = True
    verify_tls: bool = True
    ca_file: str = ""  # PEM bundle to verify against instead of the system's

    # tcp and tls
    address: str = opt("", check=lambda v: _check_address(v) if v else None)
    send: str = ""
    expect: str = ""  # a substring the answer must contain
    tls: bool = False  # tcp: a TLS handshake after connecting
    server_name: str = ""  # SNI and the name to verify; default: the host

    # dns
    query: str = ""
    record: Literal["A", "AAAA"] = "A"
    expect_addresses: tuple[str, ...] = ()  # empty: any answer will do

    # command
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.timeout == 0:
            object.__setattr__(self, "timeout", min(DEFAULT_TIMEOUT, self.interval))
        if self.timeout > self.interval:
            raise Invalid(
                f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)",
                key="timeout",
            )
        allowed = set(COMMON_KEYS) | set(TYPE_KEYS[self.type])
        for f in dataclasses.fields(self):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            if f.name not in allowed and getattr(self, f.name) != default:
                raise Invalid(f"not used by {self.type} checks", key=f.name)
        required = {
            "http": "url",
            "tcp": "address",
            "tls": "address",
            "dns": "query",
            "command": "command",
        }[self.type]
        if not getattr(self, required):
            raise Invalid(f"{self.type} checks need {required}", key=required)
        if self.body and self.body_json:
            raise Invalid("set body or body_json, not both", key="body_json")
        if self.type == "http" and urlsplit(self.url).scheme == "http" and self.ca_file:
            raise Invalid("ca_file needs an https:// url", key="ca_file")

    @property
    def host_port(self) -> tuple[str, int]:
        """tcp and tls: the parsed address."""
        parsed = split_address(self.address)
        assert parsed is not None  # validated
        return parsed


def check_names_unique(checks: tuple[CheckConfig, ...]) -> None:
    names = [c.name for c in checks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise Invalid(f"check name {name!r} is used twice", key=f"checks[{i}].name")
