"""SIGHUP: the hub reads its configuration again, without dropping a
connection or a batch.

The new file is checked whole first: the schema, then the files it names
(the secret, the read token: read anew, so a new read token takes effect
and a replaced secret too). Anything wrong, and nothing changes: the hub
logs `reload_failed_keeping_old_config` with every problem and runs on as
it was. Otherwise (`RELOADING=1`, then `READY=1` to systemd):

- what the running parts read per request or per batch takes effect at
  once, for the requests that start after it: the secret and read token,
  the body, series, skew and read-page limits, the timeouts, the
  connection and in-flight caps (`apply`); a new retention restarts the
  retention task;
- what was bound at start (`RESTART`: the listening socket, the data
  directory, the TLS files, the read threads, the `[[hub.forward]]`
  tables; and the whole `[store]` table: the store is opened at start)
  and any key not known here keeps its running value, and the hub logs
  `reload_needs_restart` naming each key.

`read_files` is also what `vigil hub check-config` and `vigil hub run`
read the files with (`load_for_run`): a file that check-config passes, a
start and a reload take, and what it refuses, `hub run` refuses with the
same lines (exit 2, a configuration error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from agent.core.configfile import listen_problem, same_files
from agent.core.schema import ConfigError, Invalid, Problem
from agent.core.sdnotify import SystemdNotifier
from hub import config as config_mod
from hub import datadir
from hub.auth import Keys, previous_until, read_secret
from hub.config import HubConfig
from hub.guard import Guard, InFlight, raise_fd_limit
from hub.ingest import Ingest
from hub.read import Read
from hub.store import Limits, Store

log = structlog.get_logger()

RESTART = ("listen", "data_dir", "tls_cert_file", "tls_key_file", "read_threads", "forward")
APPLIED = (
    "secret_file",
    "previous_secret_file",
    "previous_secret_grace",
    "read_token_file",
    "max_body",
    "max_decompressed",
    "max_series_per_host",
    "max_new_series_per_batch",
    "max_clock_skew",
    "retention_raw",
    "retention_events",
    "retention_rollup",
    "max_read_points",
    "max_read_events",
    "max_connections",
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "max_inflight_bodies",
    "max_inflight_bytes",
    "max_inflight_per_host",
    "reports",  # read by the daily report's task at each tick (hub/reports/schedule.py)
)


@dataclass
class Running:
    """The hub's parts that a reload reaches, and the configuration they run."""

    config: HubConfig
    guard: Guard
    inflight: InFlight
    ingest: Ingest
    read: Read
    store: Store
    retention_changed: Callable[[float, float, float], None]  # raw, events, rollups


@dataclass(frozen=True)
class Files:
    secret: bytes | None
    read_token: str | None
    previous: bytes | None = None  # the previous secret, during a rotation


def load_for_run(path: str | os.PathLike[str] | None) -> tuple[HubConfig, Files]:
    """The configuration as `vigil hub run` starts with it: the file, then
    the files and the directory it names, read as the hub reads them at
    start; ConfigError with every problem of either, one line each.
    `vigil hub check-config` and `vigil hub run` both load through here, so
    neither accepts what the other refuses. Creates nothing."""
    config = config_mod.load(path)
    return config, read_files(config, at_start=True)


def read_files(config: HubConfig, at_start: bool = False) -> Files:
    """What the config's files hold, or ConfigError with one problem per
    file. DATA_DIR/hub.secret is read when no `secret_file` is set and it
    exists (it is made on first start, so its absence is no problem).
    `at_start`: also what only a start uses (a reload keeps the running
    ones): the data directory, and the TLS certificate and key, loaded as
    the hub loads them."""
    hub, problems = config.hub, []

    def problem(key: str, message: str, table: str = "hub") -> None:
        path = f"{table}.{key}"
        problems.append(Problem(config.origins.file_of(path), path, message))

    if at_start and (why := datadir.problem(hub.data_dir, config.store.backend == "sqlite")):
        problem("data_dir", why)
    if at_start and (why := listen_problem(hub.listen)):
        problem("listen", why)
    secret = previous = None
    path = hub.secret_file or hub.data_dir / "hub.secret"
    if at_start and hub.secret_file is None and path.is_symlink() and not path.exists():
        # the first start makes the secret there, and cannot through this
        problem("secret_file", f"{path} is a symbolic link to nothing (secret_file is not set)")
    elif hub.secret_file is not None or path.exists():
        try:
            secret = read_secret(path)
        except OSError as exc:
            problem("secret_file", f"cannot read {path}: {_why(exc)}")
        except ValueError as exc:  # too short
            problem("secret_file", str(exc))
    if hub.previous_secret_file is not None:
        try:
            previous = read_secret(hub.previous_secret_file)
            if previous == secret:
                problem("previous_secret_file", "the same secret as secret_file")
        except OSError as exc:
            problem("previous_secret_file", f"cannot read {hub.previous_secret_file}: {_why(exc)}")
        except ValueError as exc:
            problem("previous_secret_file", str(exc))
    read_token = None
    if hub.read_token_file is not None:
        try:
            read_token = hub.read_token_file.read_text().strip()
            if not read_token:
                problem("read_token_file", f"{hub.read_token_file} is empty")
        except (OSError, UnicodeDecodeError) as exc:
            problem("read_token_file", f"cannot read {hub.read_token_file}: {_why(exc)}")
    if at_start and hub.tls_cert_file is not None and hub.tls_key_file is not None:
        try:
            server_tls(hub.tls_cert_file, hub.tls_key_file)
        except (OSError, ValueError) as exc:
            problem("tls_cert_file", f"cannot load {hub.tls_cert_file} with its key: {_why(exc)}")
    for i, forward in enumerate(hub.forward):  # forwarding: the files each forward reads
        auth = forward.basic_auth
        named: list[tuple[str, Path | None]] = [
            ("bearer_token_file", forward.bearer_token_file),
            ("ca_file", forward.ca_file),
        ]
        named.append(("basic_auth.password_file", auth.password_file if auth else None))
        for key, file in named:
            if file is None:
                continue
            if key == "ca_file":
                if why := _ca_problem(file):
                    problem(f"forward[{i}].{key}", why)
                continue
            try:
                if not file.read_text().strip():
                    problem(f"forward[{i}].{key}", f"{file} is empty")
            except (OSError, UnicodeDecodeError) as exc:
                problem(f"forward[{i}].{key}", f"cannot read {file}: {_why(exc)}")
    for i, notifier in enumerate(hub.notifiers):  # a remote notifier loads its CA as it starts
        ca_file = getattr(notifier, "ca_file", None)
        if ca_file is not None and (why := _ca_problem(ca_file)):
            problem(f"notifiers[{i}].ca_file", why)
    store = config.store  # [store] dsn_file: readable, not empty (no connection is tried)
    if store.backend == "postgres":
        try:
            importlib.import_module("hub.store.postgres")  # psycopg, as the start imports it
        except ImportError as exc:  # the optional dependency
            why = f'"postgres" needs psycopg: pip install "vigil-monitoring[postgres]" ({exc})'
            problem("backend", why, "store")
    if store.dsn_file is not None:
        try:
            if not store.dsn_file.read_text().strip():
                problem("dsn_file", f"{store.dsn_file} is empty", "store")
        except (OSError, UnicodeDecodeError) as exc:
            problem("dsn_file", f"cannot read {store.dsn_file}: {_why(exc)}", "store")
    if problems:
        raise ConfigError(problems)
    return Files(secret, read_token, previous)


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """The hub's TLS context. An encrypted key is refused, not asked for: a
    passphrase prompt on a terminal would pass check-config and hang or
    fail the service, which has none."""

    def no_passphrase() -> str:
        raise ValueError(
            f"{key} is encrypted: give the hub the key without a passphrase"
            " (openssl pkey -in KEY -out PLAIN), readable by its user alone"
        )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key, password=no_passphrase)
    return context


def _ca_problem(file: Path) -> str | None:
    """Why a CA bundle cannot be loaded as the hub's clients load it, or None."""
    try:
        ssl.create_default_context(cafile=str(file))
    except ssl.SSLError as exc:
        return f"{file} is not a PEM certificate bundle ({exc.reason or exc})"
    except OSError as exc:
        return f"cannot read {file}: {_why(exc)}"
    return None


def _why(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc)


def prepare(
    old: HubConfig, path: str | os.PathLike[str] | None
) -> tuple[HubConfig, Files, list[str]]:
    """The config to run now: `path` read again, with the running value of
    every key that cannot change at run time; its files; and those keys,
    when the file changed them. ConfigError when anything is wrong."""
    new = config_mod.load(path)
    stores = new.store != old.store  # [store]: the store was opened at start
    if stores:
        kept_store = dataclasses.replace(new, store=old.store)
        same_files(kept_store, new.origins)
        new = kept_store
    keep = [
        f.name
        for f in dataclasses.fields(new.hub)
        if f.name not in APPLIED and getattr(new.hub, f.name) != getattr(old.hub, f.name)
    ]
    if keep:
        try:
            hub = dataclasses.replace(new.hub, **{k: getattr(old.hub, k) for k in keep})
        except Invalid as exc:  # e.g. a read token dropped, but the old listen is public
            where = f"hub.{exc.key}" if exc.key else "hub"
            message = f"{exc} (with the running {', '.join(keep)}: these need a restart)"
            raise ConfigError([Problem(new.origins.file_of(where), where, message)]) from exc
        effective = dataclasses.replace(new, hub=hub)
        same_files(effective, new.origins)
        new = effective
    return new, read_files(new), keep + (["store"] if stores else [])


def keys(running: Keys, config: HubConfig, files: Files, now: float) -> Keys:
    """The secrets to check tokens with after a reload (blocking: it may
    note when a previous secret's grace began, hub/auth.py)."""
    current = files.secret if files.secret is not None else running.current
    if files.previous is None:
        return Keys(current)
    hub = config.hub
    until = previous_until(hub.data_dir, files.previous, hub.previous_secret_grace, now)
    return Keys(current, files.previous, until)


def apply(running: Running, new: HubConfig, files: Files, secrets: Keys) -> list[str]:
    """Make the running parts follow `new`; the keys that changed."""
    old, hub = running.config.hub, new.hub
    changed = [k for k in APPLIED if getattr(old, k) != getattr(hub, k)]
    ingest, read, guard, inflight = running.ingest, running.read, running.guard, running.inflight
    if secrets.previous != ingest.keys.previous:
        ingest.on_previous.clear()
    ingest.keys = secrets
    read.read_token = files.read_token
    running.store.limits = Limits(
        hub.max_series_per_host, hub.max_new_series_per_batch, hub.max_clock_skew, hub.retention_raw
    )
    ingest.max_body, ingest.max_decompressed = hub.max_body, hub.max_decompressed
    ingest.body_timeout = hub.body_timeout
    read.max_points, read.max_events = hub.max_read_points, hub.max_read_events
    if hub.max_connections > old.max_connections:
        raise_fd_limit(hub.max_connections)
    guard.max_connections = hub.max_connections
    guard.header_timeout, guard.idle_timeout = hub.header_timeout, hub.idle_timeout
    inflight.total, inflight.per_host = hub.max_inflight_bodies, hub.max_inflight_per_host
    inflight.max_bytes = hub.max_inflight_bytes
    retention = (hub.retention_raw, hub.retention_events, hub.retention_rollup)
    if retention != (old.retention_raw, old.retention_events, old.retention_rollup):
        running.retention_changed(*retention)
    running.config = new
    return changed


async def reload(
    running: Running, path: str | os.PathLike[str] | None, notifier: SystemdNotifier
) -> None:
    source = str(path) if path is not None else str(config_mod.DEFAULT_CONFIG_PATH)
    log.info("reload_requested", config=source)
    status = f"listening on {running.config.hub.listen}"
    try:
        new, files, keep = await asyncio.to_thread(prepare, running.config, path)
        secrets = await asyncio.to_thread(keys, running.ingest.keys, new, files, time.time())
    except (ConfigError, OSError) as exc:
        # OSError: the start of a previous secret's grace could not be noted
        errors = (
            [str(p) for p in exc.problems]
            if isinstance(exc, ConfigError)
            else [f"{source}: hub.data_dir: cannot note the previous secret's grace: {_why(exc)}"]
        )
        log.error("reload_failed_keeping_old_config", config=source, errors=errors)
        notifier.send(f"STATUS=reload failed, running the previous config; {status}")
        return
    notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
    if keep:
        kept: dict[str, Any] = {  # [store]: its backend only (a dsn may hold a password)
            k: running.config.store.backend
            if k == "store"
            else _plain(getattr(running.config.hub, k))
            for k in keep
        }
        log.warning("reload_needs_restart", keys=keep, kept=kept)
    changed = apply(running, new, files, secrets)
    notifier.send("READY=1", f"STATUS={status}")
    log.info("reloaded", config=new.source, changed=changed, needs_restart=keep)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
