"""The hub's configuration (`vigil hub run --config FILE`), built with the
same schema rules as the agent's: every key optional, errors name the key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from agent.core.configfile import (
    Origins,
    check_listen,
    default_state_dir,
    is_loopback,
    load_config,
    split_host_port,
)
from agent.core.schema import Duration, Invalid, OneOf, Size, check_http_url, did_you_mean, opt
from agent.notifiers.base import NOTIFIER_TYPES, NotifierConfig, check_name

DEFAULT_CONFIG_PATH = Path("/etc/vigil/hub.toml")


def _check_daily_at(value: str) -> str | None:
    if value == "":
        return None
    hours, sep, minutes = value.partition(":")
    ok = sep and len(hours) == 2 and len(minutes) == 2 and (hours + minutes).isdigit()
    if not ok or int(hours) > 23 or int(minutes) > 59:
        return f'expected a time of day "HH:MM" (24 h, e.g. "07:00"), or "" for off, got {value!r}'
    return None


def _check_timezone(value: str) -> str | None:
    if value == "":
        return None
    import zoneinfo  # only when one is set

    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        return f'expected an IANA time zone name like "Europe/Paris" or "UTC", got {value!r}'
    return None


def _check_target(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be between 0 and 1 (0.999 is 99.9 %), got {value!r}"


@dataclass(frozen=True)
class ReportsSection:
    """[hub.reports]: the daily report (docs/hub.md, "Reports")."""

    daily_at: str = opt("07:00", check=_check_daily_at)  # when it is sent; "" off
    notify: tuple[str, ...] = ()  # names of [[hub.notifiers]] it goes through
    availability_target: float = opt(0.999, check=_check_target)  # checks without their own
    timezone: str = opt("", check=_check_timezone)  # the report's days; "": the hub's local time


# -- Forwarding (hub/forward, docs/hub.md "Forwarding to Prometheus / VictoriaMetrics")

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# what the forwarder sets itself: a table's headers may not
FORWARD_HEADERS = (
    "content-encoding",
    "content-type",
    "x-prometheus-remote-write-version",
    "content-length",
)


def _check_forward_headers(value: Mapping[str, str]) -> str | None:
    for key, val in value.items():
        if not key or any(c in key + val for c in "\r\n"):
            return f"header {key!r}: names must be non-empty and no line breaks are allowed"
        if key.lower() in FORWARD_HEADERS:
            return f"header {key!r} is the forwarder's own"
    return None


def _check_extra_labels(value: Mapping[str, str]) -> str | None:
    for key, val in value.items():
        if not LABEL_NAME.fullmatch(key) or key.startswith("__"):
            return (
                f"label {key!r}: expected a Prometheus label name,"
                " [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
            )
        if key in ("host", "exported_host"):
            return f"label {key!r} is the forwarder's own (each sample's host)"
        if not val:
            return f"label {key!r}: an empty value means no label"
    return None


@dataclass(frozen=True)
class BasicAuth:
    username: str = opt(
        "", check=lambda v: None if v and ":" not in v else "non-empty, without ':'"
    )
    password_file: Path | None = None

    def __post_init__(self) -> None:
        if self.password_file is None:
            raise Invalid("basic_auth needs password_file", key="password_file")


@dataclass(frozen=True)
class ForwardConfig:
    """One `[[hub.forward]]` table: where the hub sends what it stores.
    `type` picks the sender in hub/forward/__init__.py's SENDERS (one type
    today: a new one is a module there and a word in this Literal)."""

    name: str = opt("", check=check_name)
    type: Literal["prometheus_remote_write"] = "prometheus_remote_write"
    url: str = opt("", check=check_http_url)
    headers: dict[str, str] = opt(factory=dict, check=_check_forward_headers)
    basic_auth: BasicAuth | None = None
    bearer_token_file: Path | None = None
    ca_file: Path | None = None  # trust this CA instead of the system's, for https
    verify_tls: bool = True  # false: no certificate check at all (a test bed only)
    max_samples_per_send: int = opt(
        2000, min=1, check=lambda n: None if n <= 100_000 else "at most 100000"
    )
    extra_labels: dict[str, str] = opt(factory=dict, check=_check_extra_labels)
    timeout: Duration = opt(30.0, min=0.1)  # one request
    max_backoff: Duration = opt(30.0, min=0.1)  # between retries of one send

    def __post_init__(self) -> None:
        if not self.name:
            raise Invalid("each [[hub.forward]] needs a name", key="name")
        if not self.url:
            raise Invalid("needs url, the receiver's http:// or https:// URL", key="url")
        if self.basic_auth is not None and self.bearer_token_file is not None:
            raise Invalid("set basic_auth or bearer_token_file, not both", key="bearer_token_file")
        auth = {k.lower() for k in self.headers} & {"authorization"}
        if auth and (self.basic_auth is not None or self.bearer_token_file is not None):
            raise Invalid(
                "an Authorization header and basic_auth or bearer_token_file", key="headers"
            )


@dataclass(frozen=True)
class HubSection:
    listen: str = opt("127.0.0.1:8650", check=check_listen)
    data_dir: Path = opt(factory=lambda: default_state_dir("vigil-hub"))
    # Signs host tokens. Absent: made on first start in data_dir/hub.secret.
    secret_file: Path | None = None
    # Guards the read API. Absent: open, but only if the hub listens on loopback.
    read_token_file: Path | None = None
    # HTTPS: both set, or neither (plain HTTP, e.g. behind a TLS proxy).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    max_body: Size = opt(8 << 20, min=1024)  # compressed bytes accepted per request
    max_decompressed: Size = opt(64 << 20, min=1024)
    # What one host may store (docs/operations.md, "Security")
    max_series_per_host: int = opt(20_000, min=1)
    max_new_series_per_batch: int = opt(10_000, min=1)
    max_clock_skew: Duration = opt(3600.0, min=1.0)  # records stamped further ahead: clamped
    retention_raw: Duration = opt(7 * 86400.0, min=0.0)  # 0s: keep for ever
    # Reads (issue 13): their own threads and connections, in bounded pages.
    read_threads: int = opt(2, min=1, check=lambda n: None if n <= 32 else "at most 32")
    max_read_points: int = opt(10_000, min=1)  # metric points per page of /v1/metrics
    max_read_events: int = opt(1_000, min=1)  # events per page of /v1/events
    # Connections, timeouts and bodies in flight (hub/guard.py): what one
    # client may hold, with or without a token.
    max_connections: int = opt(4096, min=1)
    header_timeout: Duration = opt(10.0, min=0.1)
    idle_timeout: Duration = opt(30.0, min=0.1)
    body_timeout: Duration = opt(30.0, min=0.1)
    max_inflight_bodies: int = opt(256, min=1)
    max_inflight_bytes: Size = opt(64 << 20, min=1024)  # declared body sizes, in all
    max_inflight_per_host: int = opt(2, min=1)
    # Rollups and retention (issue 14, item 5; retention_raw is above): 0s keeps for ever.
    retention_rollup: Duration = opt(400 * 86400.0, min=0.0)  # the 5-minute rollups
    retention_events: Duration = opt(90 * 86400.0, min=0.0)

    # The fleet (hub/liveness.py): a host with no batch for this long is
    # silent and raises HostSilent through the hub's notifiers.
    silent_after: Duration = opt(60.0, min=1.0)
    notifiers: tuple[Annotated[NotifierConfig, OneOf(NOTIFIER_TYPES)], ...] = ()

    # Rotating the secret (docs/hub.md): tokens signed with this older
    # secret are accepted too, for `previous_secret_grace` from the first
    # start or reload that read it (kept in data_dir across restarts).
    previous_secret_file: Path | None = None
    previous_secret_grace: Duration = opt(7 * 86400.0, min=60.0)

    # Reports (issue 14, item 4; hub/reports/): the daily report and where it goes.
    reports: ReportsSection = field(default_factory=ReportsSection)
    # Forwarding (hub/forward): what the hub stores, sent on to a TSDB.
    forward: tuple[ForwardConfig, ...] = ()

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise Invalid("set tls_cert_file and tls_key_file together", key="tls_key_file")
        names = [n.name for n in self.notifiers]
        for i, name in enumerate(names):
            if name in names[:i] or name == "journal":
                raise Invalid(f"notifier name {name!r} is used twice", key=f"notifiers[{i}].name")
        for i, name in enumerate(self.reports.notify):
            if name not in names:
                hint = did_you_mean(name, names)
                defined = ", ".join(names) or "none"
                raise Invalid(
                    f"no [[hub.notifiers]] named {name!r}{hint}; defined: {defined}",
                    key=f"reports.notify[{i}]",
                )
        host = split_host_port(self.listen)[0]
        if self.read_token_file is None and not is_loopback(host):
            raise Invalid(
                f"listen = {self.listen!r} is not loopback, so the read API needs read_token_file",
                key="read_token_file",
            )
        forwards = [f.name for f in self.forward]
        for i, name in enumerate(forwards):
            if name in forwards[:i]:
                raise Invalid(f"forward name {name!r} is used twice", key=f"forward[{i}].name")


# -- the store (issue 15, item 2: PostgreSQL for several hubs; hub/store/postgres.py) --


def _check_dsn(value: str) -> str | None:
    if value and ("\n" in value or "\x00" in value):
        return "expected one line: a libpq connection string or postgresql:// URL"
    return None


@dataclass(frozen=True)
class StoreSection:
    """[store]: where the hub keeps what it stores (docs/hub.md, "Several
    hubs on PostgreSQL"). Read at start only: a change needs a restart."""

    backend: Literal["sqlite", "postgres"] = "sqlite"  # sqlite: DATA_DIR/hub.db
    # postgres: a libpq connection string or URL, or a file holding one
    # (keeps the password out of this file); exactly one of them.
    dsn: str = opt("", check=_check_dsn)
    dsn_file: Path | None = None
    # connections the hub keeps: one for the store thread, the rest for reads
    # (at least 1 + [hub] read_threads, so no read waits for one)
    pool_size: int = opt(4, min=2, check=lambda n: None if n <= 64 else "at most 64")
    connect_timeout: Duration = opt(10.0, min=1.0)  # per connection attempt

    def __post_init__(self) -> None:
        if self.backend == "postgres" and not self.dsn and self.dsn_file is None:
            raise Invalid('backend = "postgres" needs dsn or dsn_file', key="dsn")
        if self.dsn and self.dsn_file is not None:
            raise Invalid("set dsn or dsn_file, not both", key="dsn_file")
        if self.backend == "sqlite" and (self.dsn or self.dsn_file is not None):
            key = "dsn" if self.dsn else "dsn_file"
            raise Invalid('only with backend = "postgres" (the SQLite store needs none)', key=key)


@dataclass(frozen=True)
class HubConfig:
    hub: HubSection = field(default_factory=HubSection)
    store: StoreSection = field(default_factory=StoreSection)
    source: str = field(default="(built-in defaults)", init=False, compare=False)
    origins: Origins = field(default_factory=Origins, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.store.backend == "postgres" and self.store.pool_size < 1 + self.hub.read_threads:
            raise Invalid(
                f"must be at least 1 + [hub] read_threads ({1 + self.hub.read_threads}):"
                " one connection for the store thread and one per read thread",
                key="store.pool_size",
            )


def load(path: str | os.PathLike[str] | None) -> HubConfig:
    """The hub's config: `path`, else /etc/vigil/hub.toml if it exists, else the defaults."""
    return load_config(HubConfig, path, DEFAULT_CONFIG_PATH)
