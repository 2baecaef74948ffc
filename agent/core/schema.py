"""Typed, frozen configuration objects built from TOML.

A config section is a frozen dataclass; this module walks its fields and
converts a TOML table into it, collecting every problem (unknown key, wrong
type, bad value) with the key path that caused it, so `vigil check-config`
can report them all at once. Section classes only declare fields; extra
constraints go in field metadata (see `opt`).

Field types understood: str, bool, int, float, Path, Duration (float
seconds from "10s"), Size (int bytes from "256MiB"), Literal[...],
X | None, tuple[X, ...] (TOML arrays), dict[str, str], and nested section
dataclasses (tables, or arrays of tables as tuple[Section, ...]).

Plugins own their config, so two field kinds come from a `Registry`:
- `Annotated[Base, OneOf(registry)]`: a table whose `type` key picks the
  section class among the registered ones (a check, a notifier); a key
  that belongs to another type is named as such.
- `plugin_options(registry)` on a `Mapping[str, Any]` field: the section's
  other keys that name a registered plugin are that plugin's options table
  (`[host.disk]`); every plugin with options gets its defaults. With
  `flat=True` the plugins' options are keys of the section itself, each
  plugin's config class declaring the keys it owns (`[log_detectors]`:
  `auth_threshold` belongs to the auth detector's class).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from agent.core.registry import Registry

Duration = Annotated[float, "duration"]
Size = Annotated[int, "size"]

T = TypeVar("T")

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


class Invalid(ValueError):
    """A value that cannot be converted; the message says what was expected.
    `key` names the field at fault when a section's __post_init__ raises it."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.others: list[Invalid] = []  # more problems the same check found, all reported

    @staticmethod
    def raise_all(problems: list[Invalid]) -> None:
        """Raise every problem a cross-field check found at once; none: return."""
        if problems:
            first = problems[0]
            first.others = problems[1:]
            raise first


def parse_duration(value: object) -> float:
    """ "10s", "1m30s", "250ms", "2h", "7d" -> seconds. Bare numbers are refused:
    "interval = 10" could mean seconds or milliseconds, and guessing is worse."""
    if not isinstance(value, str):
        raise Invalid(f'expected a duration string with a unit, like "10s" or "5m", got {value!r}')
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise Invalid(f'expected a duration like "10s", "500ms", "5m", "1h30m", got {value!r}')
    return total


def parse_size(value: object) -> int:
    """256MiB, "1GB", "64k" or a plain integer of bytes -> bytes.
    KB/MB/GB are powers of 1000, KiB/MiB/GiB and K/M/G powers of 1024."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise Invalid(f"expected a size of zero or more bytes, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value.strip().lower())
        if m and m.group(2) in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise Invalid(f'expected a size like "256MiB", "10MB" or a number of bytes, got {value!r}')


def opt(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    min: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    each: Callable[[Any], str | None] | None = None,
) -> Any:
    """A section field with a default and optional constraints.

    `min` bounds numbers and durations; `check` returns an error text or None;
    `each` is such a check applied to every item of an array.
    """
    meta = {"min": min, "check": check, "each": each}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class OneOf:
    """Marks a table whose `key` field picks its section class in `registry`."""

    registry: Registry[Any]
    key: str = "type"


def plugin_options(registry: Registry[Any], *, flat: bool = False) -> Any:
    """A `Mapping[str, Any]` field holding each registered plugin's options
    (name -> its config object), given as tables beside the section's own
    keys; with `flat`, as the section's own keys: each plugin's config class
    then names the keys it owns, and no key may belong to two of them (or to
    the section)."""
    return dataclasses.field(
        default_factory=lambda: _Defaults(registry),
        metadata={"plugins": registry, "flat": flat},
    )


class _Defaults(Mapping[str, Any]):
    """`defaults_of(registry)`, worked out when first read: a section that
    no file sets (`[log_detectors]` on a host that tails no log) does not
    import the plugins of a lazy registry (agent/core/registry.py)."""

    def __init__(self, registry: Registry[Any]) -> None:
        self._registry = registry
        self._built: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._built is None:
            self._built = defaults_of(self._registry)
        return self._built

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return repr(self._all())


def defaults_of(registry: Registry[Any]) -> dict[str, Any]:
    return {name: cls() for name, cls in registry.configs().items()}


@dataclasses.dataclass(frozen=True)
class Problem:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """Every problem found in one configuration file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest of `choices`, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated and isinstance(args[1], OneOf):
        return f"a table with {args[1].key} = one of " + ", ".join(map(repr, args[1].registry))
    if origin is Annotated:
        return {"duration": 'a duration like "10s"', "size": 'a size like "256MiB"'}[args[1]]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if dataclasses.is_dataclass(args[0]):
            return "an array of tables"
        return "an array of strings" if args[0] is str else f"an array of {_describe(args[0])}"
    if origin is dict:
        return "a table of strings"
    if dataclasses.is_dataclass(tp):
        return "a table"
    names = {
        str: "a string",
        bool: "true or false",
        int: "an integer",
        float: "a number",
        Path: "a path string",
    }
    return names.get(tp, str(tp))


class _Builder:
    def __init__(self, file: str, file_of: Callable[[str], str] | None = None) -> None:
        self.file = file
        self.file_of = file_of  # the file that set a key path, with drop-ins
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        file = self.file_of(path) if self.file_of else self.file
        self.problems.append(Problem(file, path, message))

    def section(
        self, cls: type[T], data: object, path: str, foreign: Mapping[str, str] | None = None
    ) -> T | None:
        """`foreign`: keys this section lacks that a sibling type has, with
        the message to give (a tcp check's `url`)."""
        if not isinstance(data, Mapping):
            self.fail(path, f"expected a table, got {type(data).__name__} {data!r}")
            return None
        hints = typing.get_type_hints(cls, include_extras=True)
        # A field named like a Python keyword takes a trailing underscore
        # (`for_`); its TOML key is the word itself (`for`).
        fields = {
            f.name.removesuffix("_"): f
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.init and "plugins" not in f.metadata
        }
        plugins = {
            f.name: f.metadata
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if "plugins" in f.metadata
        }
        options = {
            n: c
            for meta in plugins.values()
            if not meta["flat"]
            for n, c in meta["plugins"].configs().items()
        }
        owners = _flat_owners(plugins, fields)
        values: dict[str, Any] = {}
        ok = True
        for key in data:
            if key in fields or key in options or key in owners:
                continue
            if foreign and key in foreign:
                self.fail(_join(path, key), foreign[key])
                continue
            hint = did_you_mean(key, [*fields, *options, *owners])
            known = ", ".join(sorted([*fields, *options, *owners]))
            self.fail(_join(path, key), f"unknown key{hint}; known keys here: {known}")
        for name, meta in plugins.items():
            registry = meta["plugins"]
            built = defaults_of(registry)
            for plugin, option_cls in registry.configs().items():
                if meta["flat"]:  # its keys, read from this very table
                    raw: object = {k: v for k, v in data.items() if owners.get(k) == (name, plugin)}
                    if not raw:
                        continue
                    where = path
                elif plugin in data:
                    raw, where = data[plugin], _join(path, plugin)
                else:
                    continue
                before = len(self.problems)
                built[plugin] = self.section(option_cls, raw, where)
                ok = ok and len(self.problems) == before
            values[name] = built
        for key, f in fields.items():
            name = f.name
            if key not in data:
                required = f.default is f.default_factory is dataclasses.MISSING
                if required:
                    self.fail(_join(path, key), f"required: {_describe(hints[name])}")
                    ok = False
                continue
            key_path = _join(path, key)
            before = len(self.problems)
            value = self.value(hints[name], data[key], key_path)
            if len(self.problems) == before:
                self.constraints(f.metadata, value, key_path)
            if len(self.problems) != before:
                ok = False
                continue
            values[name] = value
        if not ok:
            # the cross-field checks that can still be made, on what did build
            partial = getattr(cls, "partial_checks", None)
            if partial is not None:
                failed = {f.name for k, f in fields.items() if k in data and f.name not in values}
                self._report(partial(values, failed), path)
            return None
        try:
            return cls(**values)
        except Invalid as exc:  # a cross-field check in __post_init__
            self._report([exc], path)
            return None

    def _report(self, problems: list[Invalid], path: str) -> None:
        for exc in problems:
            for one in (exc, *exc.others):
                self.fail(_join(path, one.key) if one.key else path, str(one))

    def value(self, tp: Any, raw: object, path: str) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        try:
            if origin is Annotated and isinstance(args[1], OneOf):
                return self.one_of(args[1], raw, path)
            if origin is Annotated:
                return parse_duration(raw) if args[1] == "duration" else parse_size(raw)
            if origin in (Union, types.UnionType):
                inner = [a for a in args if a is not type(None)]
                return self.value(inner[0], raw, path)
            if origin is Literal:
                if raw not in args:
                    raise Invalid(f"expected {_describe(tp)}, got {raw!r}")
                return raw
            if origin is tuple:
                if not isinstance(raw, list):
                    raise Invalid(f"expected {_describe(tp)}, got {raw!r}")
                return tuple(
                    self.value(args[0], item, f"{path}[{i}]") for i, item in enumerate(raw)
                )
            if origin is dict:
                if not isinstance(raw, Mapping) or not all(
                    isinstance(v, str) for v in raw.values()
                ):
                    raise Invalid(f"expected {_describe(tp)}, got {raw!r}")
                return dict(raw)
            if dataclasses.is_dataclass(tp):
                return self.section(tp, raw, path)  # type: ignore[arg-type]
            return _scalar(tp, raw)
        except Invalid as exc:
            self.fail(path, str(exc))
            return None

    def one_of(self, marker: OneOf, raw: object, path: str) -> Any:
        registry, key = marker.registry, marker.key
        if not isinstance(raw, Mapping):
            raise Invalid(f"expected a table, got {type(raw).__name__} {raw!r}")
        choice = raw.get(key)
        known = ", ".join(map(repr, registry))
        if choice is None:
            self.fail(_join(path, key), f"required: one of {known}")
            return None
        if not isinstance(choice, str) or choice not in registry:
            self.fail(_join(path, key), f"expected one of {known}, got {choice!r}")
            return None
        cls = registry.config_of(registry[choice])
        if cls is None:  # never for the registries OneOf is used with: each type has keys
            raise Invalid(f"{key} {choice!r} takes no table")
        own = {f.name.removesuffix("_") for f in dataclasses.fields(cls)}
        foreign: dict[str, str] = {}
        # the other types' keys, to name them in an error: only when the table
        # has a key of its own type's not (a lazy registry loads them all)
        others = registry.configs().items() if any(k not in own for k in raw) else ()
        for other, other_cls in others:
            for f in dataclasses.fields(other_cls):
                name = f.name.removesuffix("_")
                if name not in own:
                    users = foreign.setdefault(name, "")
                    foreign[name] = f"{users}, {other!r}" if users else repr(other)
        messages = {
            name: f"not used by {key} {choice!r} (only by {users})"
            for name, users in foreign.items()
        }
        return self.section(cls, raw, path, messages)

    def constraints(self, meta: Mapping[str, Any], value: Any, path: str) -> None:
        if value is None:
            return
        low = meta.get("min")
        if low is not None and value < low:
            self.fail(path, f"must be at least {low}, got {value}")
        check, each = meta.get("check"), meta.get("each")
        if check is not None and (err := check(value)):
            self.fail(path, err)
        if each is not None:
            for i, item in enumerate(value):
                if err := each(item):
                    self.fail(f"{path}[{i}]", err)


def _flat_owners(
    plugins: Mapping[str, Mapping[str, Any]], fields: Mapping[str, Any]
) -> dict[str, tuple[str, str]]:
    """Key -> (field, plugin) for the keys that flat plugin options own."""
    owners: dict[str, tuple[str, str]] = {}
    for name, meta in plugins.items():
        if not meta["flat"]:
            continue
        for plugin, option_cls in meta["plugins"].configs().items():
            for f in dataclasses.fields(option_cls):
                key = f.name.removesuffix("_")
                if key in owners or key in fields:
                    other = repr(owners[key][1]) if key in owners else "the section"
                    raise RuntimeError(
                        f"{meta['plugins'].kind} {plugin!r} and {other} both claim the key {key!r}"
                    )
                owners[key] = (name, plugin)
    return owners


def _scalar(tp: Any, raw: object) -> Any:
    if tp is bool and isinstance(raw, bool):
        return raw
    if tp is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if tp is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if tp is str and isinstance(raw, str):
        return raw
    if tp is Path and isinstance(raw, str) and raw:
        if "\0" in raw:  # no system call takes one
            raise Invalid(f"a path cannot hold a NUL character, got {raw!r}")
        return Path(raw).expanduser()
    raise Invalid(f"expected {_describe(tp)}, got {type(raw).__name__} {raw!r}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def build(
    cls: type[T], data: Mapping[str, Any], file: str, file_of: Callable[[str], str] | None = None
) -> T:
    """Build section `cls` from parsed TOML, or raise ConfigError listing
    every problem; `file_of` names the file of each key path (drop-ins)."""
    builder = _Builder(file, file_of)
    result = builder.section(cls, data, "")
    if builder.problems or result is None:
        raise ConfigError(builder.problems)
    return result


def check_identifier(value: str) -> str | None:
    """A name that becomes a label value: log rules, checks."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}", value):
        return "must start with a letter or _ and hold only letters, digits, _ . -"
    return None


def check_regex(pattern: str) -> str | None:
    with warnings.catch_warnings():
        # Python warns of what will change meaning ("[[:alpha:]]" is no POSIX
        # class here): an error, rather than a line on stderr and a surprise
        warnings.simplefilter("error", FutureWarning)
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"not a valid regular expression ({exc}): {pattern!r}"
        except FutureWarning as exc:
            return f"{exc} (Python has no POSIX classes like [[:alpha:]]): {pattern!r}"
    return None


def check_http_url(value: str) -> str | None:
    """The one URL rule: http or https, with a host (hub, notifiers, checks)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        example = '"http://127.0.0.1:8650"'
        return f"expected an http:// or https:// URL with a host, like {example}, got {value!r}"
    return None


def check_host_id(value: str) -> str | None:
    """The one host id rule, for the agent's host_id, `vigil hub token` and
    ingest: 1 to 253 characters, none of them space, control or "/",
    representable in UTF-8 (the token carries it)."""
    if not value or len(value) > 253:
        return "must be 1 to 253 characters"
    if any(c.isspace() or c == "/" or not c.isprintable() for c in value):
        return "must hold no spaces, control characters or slashes"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None
