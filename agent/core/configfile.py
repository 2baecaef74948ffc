"""Config files and the values several configs share: TOML loading with
errors naming the file, listen addresses, default state directories.
Used by the agent's config and the hub's alike."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from agent.core.schema import ConfigError, Problem, build

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

T = TypeVar("T")


def default_state_dir(name: str = "vigil") -> Path:
    """systemd's StateDirectory= when set, /var/lib/NAME for root, else the
    user's XDG state directory, so `vigil run` works unprivileged too."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib") / name
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(xdg) / name


def check_listen(value: str) -> str | None:
    try:
        split_host_port(value)
    except ValueError as exc:
        return str(exc)
    return None


def split_host_port(listen: str) -> tuple[str, int]:
    """ "127.0.0.1:8651", "[::1]:8651", "localhost:8651" -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'expected "HOST:PORT" such as "127.0.0.1:8651", got {listen!r}')
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict, or ConfigError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data: dict[str, Any] = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(str(path), "", f"not valid TOML: {exc}")]) from exc
    return data


def load_config(cls: type[T], path: str | os.PathLike[str] | None, default: Path) -> T:
    """Build `cls` from `path`; with None, from `default` if it exists, else
    the built-in defaults. The result remembers its file in `source`."""
    if path is None:
        if not default.exists():
            return cls()
        path = default
    config = build(cls, read_toml(path), str(path))
    object.__setattr__(config, "source", str(path))
    return config
