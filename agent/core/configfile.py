"""Config files and the values several configs share: TOML loading with
errors naming the file, drop-in files, listen addresses, default state
directories. Used by the agent's config and the hub's alike.

Drop-in files: beside the main file FILE.toml, every `FILE.d/*.toml`
(`/etc/vigil/agent.d/`, `/etc/vigil/hub.d/`) is merged over it in name
order, as configuration management adds a check or a log file without
owning the whole file. Tables merge key by key; an array of tables
(`[[checks]]`) is appended to; any other value (a scalar, an array of
strings) is replaced. `Origins` remembers which file set each value, so
every error names the file the bad value came from, and `vigil
check-config --show` prints it beside each value.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
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


def listen_problem(listen: str) -> str | None:
    """Why a daemon could not listen on `listen` ("HOST:PORT"), as far as
    can be told without binding: its host must resolve (a taken port is
    found at run time)."""
    host, port = split_host_port(listen)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {listen}: {host!r} is no address of this host ({exc})"
    return None


def remote_problem(listen: str | None, allow_remote: bool, exposes: str) -> str | None:
    """The one rule for a listening socket with no authentication: beyond
    loopback only when `allow_remote` asks for it. `exposes`: what it would
    do for other hosts ("expose the endpoint beyond this host")."""
    if listen and not allow_remote and not is_loopback(split_host_port(listen)[0]):
        return (
            f"listen = {listen!r} is not a loopback address; set allow_remote = true to {exposes}"
        )
    return None


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
        bom = " (it starts with a byte order mark: save it as UTF-8 without one)"
        hint = bom if text.startswith("\ufeff") else ""
        raise ConfigError([Problem(str(path), "", f"not valid TOML: {exc}{hint}")]) from exc
    return data


BUILT_IN = "(built-in defaults)"


class Origins:
    """Which file set each value of a merged configuration: `file_of(key
    path)` is the file of the longest recorded prefix of the path (a table
    from the main file, one key of it overridden by a drop-in)."""

    def __init__(self, main: str = BUILT_IN) -> None:
        self.main = main  # the main file, or BUILT_IN when there is none
        self.files: list[str] = []  # every file read, in merge order
        self.data: dict[str, Any] = {}  # the merged TOML
        self._at: dict[str, str] = {}

    def set(self, path: str, file: str) -> None:
        """`file` set the value at `path`, and everything under it."""
        for key in [k for k in self._at if k.startswith((path + ".", path + "["))]:
            del self._at[key]
        self._at[path] = file

    def file_of(self, path: str) -> str:
        while path:
            if path in self._at:
                return self._at[path]
            path = _parent(path)
        return self.main


def _parent(path: str) -> str:
    """ "checks[2].url" -> "checks[2]" -> "checks" -> ""."""
    cut = max(path.rfind("."), path.rfind("[") if path.endswith("]") else -1)
    return path[: max(cut, 0)]


def _is_tables(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def merge(base: dict[str, Any], extra: dict[str, Any], file: str, origins: Origins) -> None:
    """Merge `extra` (from `file`) into `base` in place, as drop-ins merge."""

    def into(base: dict[str, Any], extra: dict[str, Any], prefix: str) -> None:
        for key, value in extra.items():
            path = f"{prefix}.{key}" if prefix else key
            old = base.get(key)
            if isinstance(old, dict) and isinstance(value, dict):
                into(old, value, path)
            elif key in base and _is_tables(old) and _is_tables(value):
                assert isinstance(old, list) and isinstance(value, list)
                for i in range(len(old), len(old) + len(value)):
                    origins.set(f"{path}[{i}]", file)
                old.extend(value)
            else:
                base[key] = value
                origins.set(path, file)

    into(base, extra, "")


def drop_in_dir(main: Path) -> Path:
    """/etc/vigil/agent.toml -> /etc/vigil/agent.d"""
    return main.with_name(main.stem + ".d")


def read_merged(path: str | os.PathLike[str] | None, default: Path) -> Origins | None:
    """The main file (`path`, else `default` if it exists) with its drop-in
    files merged over it; None when there is neither. ConfigError naming
    every file that cannot be read or parsed, all at once."""
    main = Path(path) if path is not None else (default if default.exists() else None)
    directory = drop_in_dir(main if main is not None else default)
    problems: list[Problem] = []
    files: list[Path] = [main] if main is not None else []
    try:
        if directory.exists() or directory.is_symlink():
            if not directory.is_dir():
                raise NotADirectoryError(0, "not a directory")
            names = sorted(
                p.name for p in directory.iterdir() if p.suffix == ".toml" and p.name[0] != "."
            )
            for name in names:
                if (directory / name).exists() and not (directory / name).is_file():
                    # a FIFO would hang the read; a directory cannot be one
                    problems.append(Problem(str(directory / name), "", "not a regular file"))
                else:
                    files.append(directory / name)
    except OSError as exc:
        problems.append(Problem(str(directory), "", f"cannot read: {exc.strerror or exc}"))
    if not files and not problems:
        return None
    origins = Origins(str(main) if main is not None else BUILT_IN)
    for file in files:
        try:
            data = read_toml(file)
        except ConfigError as exc:
            problems += exc.problems
            continue
        origins.files.append(str(file))
        merge(origins.data, data, str(file), origins)
    if problems:
        raise ConfigError(problems)
    return origins


def load_config(cls: type[T], path: str | os.PathLike[str] | None, default: Path) -> T:
    """Build `cls` from `path` and its drop-ins; with None, from `default`
    if it exists, else the built-in defaults (and the drop-ins beside
    `default`). The result keeps its main file in `source` and where each
    value came from in `origins`."""
    origins = read_merged(path, default)
    if origins is None:
        return cls()
    config = build(cls, origins.data, origins.main, origins.file_of)
    same_files(config, origins)
    return config


def same_files(config: object, origins: Origins) -> None:
    """Give `config` (one built again with dataclasses.replace too) its files."""
    object.__setattr__(config, "source", origins.main)
    object.__setattr__(config, "origins", origins)


def show(origins: Origins) -> str:
    """The merged configuration as TOML, each value followed by the file
    that set it (`vigil check-config --show`). Loading the output again
    gives the same configuration."""
    files = ", ".join(_comment(f) for f in origins.files) or "no file"
    return f"# merged from: {files}\n" + to_toml(origins.data, origins.file_of)


def to_toml(data: dict[str, Any], file_of: Any = None) -> str:
    """`data` (as tomllib gives it) written as TOML: tables as [sections],
    arrays of tables as [[sections]], the rest inline; with `file_of`, a
    comment naming the file of each value."""
    out: list[str] = []

    def note(path: str) -> str:
        return f"  # {_comment(file_of(path))}" if file_of else ""

    def table(data: dict[str, Any], path: str, header: list[str]) -> None:
        nested = [k for k, v in data.items() if isinstance(v, dict) or (_is_tables(v) and v)]
        for key, value in data.items():
            if key not in nested:
                out.append(f"{_key(key)} = {_inline(value)}{note(_sub(path, key))}")
        for key in nested:
            value, sub = data[key], _sub(path, key)
            name = ".".join(_key(k) for k in [*header, key])
            if isinstance(value, dict):
                out.append(f"\n[{name}]{note(sub) if not value else ''}")
                table(value, sub, [*header, key])
                continue
            for i, item in enumerate(value):
                out.append(f"\n[[{name}]]{note(f'{sub}[{i}]') if not item else ''}")
                table(item, f"{sub}[{i}]", [*header, key])

    table(data, "", [])
    return "\n".join(out).lstrip("\n") + "\n"


def _comment(name: str) -> str:
    """A file name as a comment may hold it: as it is when printable UTF-8,
    else quoted with escapes (a line break in a name would end the comment)."""
    try:
        name.encode()
    except UnicodeEncodeError:  # undecodable bytes, kept as surrogates
        return json.dumps(name)
    return name if name.isprintable() else json.dumps(name)


def _sub(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML refuses a raw DEL
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    return str(value.isoformat())  # TOML's dates and times are ISO 8601's
