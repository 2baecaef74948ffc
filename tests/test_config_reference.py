"""Issue 19: the configuration reference and the program agree, key by key.

Every key documented in docs/configuration.md (the agent's tables and the
hub's) is read from the docs, not from the code, and:
- exists in the schema, and every schema key is documented;
- given a value of the wrong kind, is refused by `vigil check-config` and
  by `vigil run` (`vigil hub check-config` and `vigil hub run` for the
  hub's) with exit 2 and the same lines, naming the file and the key;
- where the docs give its default as a TOML value, that value loads and
  gives the same configuration as leaving the key out.
The commands run in-process through `agent.cli.main`, as the `vigil`
script calls it; tests/e2e/test_check_config.py drives the real processes.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent import cli
from agent.config import Config
from agent.core.configfile import to_toml
from agent.core.schema import OneOf
from hub.config import HubConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = Path(__file__).parents[1] / "docs" / "configuration.md"

# The least each array-of-tables entry needs to be valid, by table, and for
# a table whose `type` picks its keys, by type.
BASE: dict[str, dict[str, Any]] = {
    "logs": {"paths": ["/nonexistent/vigil-sweep/*.log"]},
    "logs.rules": {"name": "r", "pattern": "x"},
    "journal": {},
    "journal.rules": {"name": "r", "pattern": "x"},
    "alerts": {"name": "r", "expr": "cpu_usage_percent > 1"},
    "hub.forward": {"name": "f", "url": "http://127.0.0.1:9/api/v1/write"},
    "scrape": {"name": "s", "url": "http://127.0.0.1:9/metrics"},
    "processes": {"name": "p", "match": {"exe": "sshd"}},
    "processes.match": {"exe": "sshd"},
}
BY_TYPE: dict[str, dict[str, Any]] = {
    "journal": {},
    "exec": {"command": ["true"]},
    "file": {"path": "/nonexistent/vigil-sweep/alerts.jsonl"},
    "webhook": {"url": "http://127.0.0.1:9/hook"},
    "alertmanager": {"url": "http://127.0.0.1:9"},
    "http": {"url": "http://127.0.0.1:9/"},
    "tcp": {"address": "127.0.0.1:9"},
    "tls": {"address": "127.0.0.1:9"},
    "dns": {"query": "localhost"},
    "command": {"command": ["true"]},
}


@dataclasses.dataclass(frozen=True)
class Key:
    table: str  # as the docs head it: "agent", "host.disk", "checks", "hub.forward"
    name: str
    hint: Any  # the field's type
    place: Callable[[Any], dict[str, Any]]  # the value -> a whole config holding it there
    path: str  # the key path the errors name

    def __str__(self) -> str:
        return f"{self.table}.{self.name}"


def _walk(
    cls: Any, table: str, path: str, place: Callable[[dict], dict], base: dict
) -> Iterator[Key]:
    """Every key of section `cls`, each with the config that sets it alone."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f.name.removesuffix("_")
        if "plugins" in f.metadata:  # plugin options: [host.disk], flat [log_detectors]
            for plugin, options in f.metadata["plugins"].configs().items():
                if f.metadata["flat"]:
                    yield from _walk(options, table, path, place, base)
                else:
                    sub = f"{table}.{plugin}"

                    def put(d: dict, plugin: str = plugin) -> dict:
                        return place({**base, plugin: d})

                    yield from _walk(options, sub, f"{path}.{plugin}", put, {})
            continue
        tp = hints[f.name]
        args = typing.get_args(tp)
        array = typing.get_origin(tp) is tuple and args
        item = args[0] if array else tp
        item_args = typing.get_args(item)
        sub = f"{table}.{key}" if table else key
        sub_path = f"{path}.{key}" if path else key
        if typing.get_origin(item) is typing.Annotated and isinstance(item_args[1], OneOf):
            for kind, kind_cls in item_args[1].registry.configs().items():
                entry = {"name": "n", "type": kind, **BY_TYPE[kind]}

                def put(d: dict, key: str = key) -> dict:
                    return place({**base, key: [d]})

                yield from _walk(kind_cls, sub, f"{sub_path}[0]", put, entry)
        elif dataclasses.is_dataclass(item):
            entry = BASE.get(sub, {})

            def put(d: dict, key: str = key, array: bool = bool(array)) -> dict:
                return place({**base, key: [d] if array else d})

            yield from _walk(item, sub, f"{sub_path}[0]" if array else sub_path, put, entry)
        else:

            def put_leaf(value: Any, key: str = key) -> dict:
                return place({**base, key: value})

            yield Key(table, key, tp, put_leaf, sub_path)


def _keys(cls: Any) -> dict[str, Key]:
    out: dict[str, Key] = {}
    for key in _walk(cls, "", "", lambda d: d, {}):
        out.setdefault(str(key), key)  # a key several types share: the first type's
    return out


AGENT_KEYS = _keys(Config)
HUB_KEYS = _keys(HubConfig)


def _documented() -> tuple[dict[str, str], dict[str, str]]:
    """(agent key -> its default cell, hub key -> its default cell), from the docs."""
    agent: dict[str, str] = {}
    hub: dict[str, str] = {}
    table = None
    for line in DOCS.read_text().splitlines():
        if m := re.match(r"^#+ `\[\[?([a-z_.]+)\]?\]`", line):
            table = m.group(1)
        elif line.startswith("## The hub's configuration"):
            table = "(hub)"
        elif line.startswith("| `") and table is not None:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if table == "(hub)":
                for t, name in re.findall(r"`\[\[?([a-z_.]+)\]?\] ([a-z_]+)`", cells[0]):
                    hub[f"{t}.{name}"] = cells[2]
            elif m := re.fullmatch(r"`([a-z_]+)`", cells[0]):
                agent[f"{table}.{m.group(1)}"] = cells[2]
    return agent, hub


AGENT_DOCS, HUB_DOCS = _documented()
# [[hub.notifiers]] "the same types and keys as the agent's [[notifiers]]"
HUB_DOCS |= {f"hub.{k}": v for k, v in AGENT_DOCS.items() if k.startswith("notifiers.")}


def test_the_docs_and_the_schema_hold_the_same_keys():
    assert len(AGENT_DOCS) > 120 and len(HUB_DOCS) > 60  # the tables were found
    tables = {k for k in AGENT_DOCS if any(o.startswith(k + ".") for o in AGENT_DOCS)}
    assert sorted(set(AGENT_DOCS) - set(AGENT_KEYS) - tables) == [], "documented, not in the schema"
    assert sorted(set(AGENT_KEYS) - set(AGENT_DOCS)) == [], "in the schema, not documented"
    assert sorted(set(HUB_DOCS) - set(HUB_KEYS)) == [], "documented, not in the hub's schema"
    assert sorted(set(HUB_KEYS) - set(HUB_DOCS)) == [], "in the hub's schema, not documented"


def _wrong(tp: Any) -> Any:
    """A value of the wrong kind for a field of type `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _wrong(next(a for a in args if a is not type(None)))
    if origin is typing.Annotated:  # a duration or a size
        return "a while" if args[1] == "duration" else "quite big"
    if origin is typing.Literal:
        return "none-of-these"
    if tp in (int, float):
        return "many"
    if tp is bool:
        return "yes"
    if origin is tuple:
        return "not an array"
    return 12345  # str, Path, tables


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    saved = structlog.get_config()
    try:
        code = cli.main(argv)
    finally:  # main points the logs at this test's captured stderr: not the next tests'
        structlog.configure(**saved)
    return code, capsys.readouterr().err


def _both(kind: str, path: Path, capsys) -> tuple[tuple[int, str], tuple[int, str]]:
    hub = ["hub"] if kind == "hub" else []
    checked = _run([*hub, "check-config", "--config", str(path)], capsys)
    if checked[0] != 2:  # a run of an accepted file would start the daemon here
        return checked, (-1, "not run: check-config accepted the file")
    return checked, _run([*hub, "run", "--config", str(path)], capsys)


def _file(tmp_path: Path, kind: str, data: dict[str, Any]) -> Path:
    state = {"agent": {"state_dir": str(tmp_path / "state")}} if kind == "agent" else {}
    if kind == "hub":
        state = {"hub": {"data_dir": str(tmp_path / "data")}}
    for table, values in state.items():  # under what the key's config sets
        data = {**data, table: {**values, **data.get(table, {})}}
    path = tmp_path / f"{kind}.toml"
    path.write_text(to_toml(data))
    return path


CASES = [("agent", k) for k in sorted(AGENT_KEYS)] + [("hub", k) for k in sorted(HUB_KEYS)]


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_a_wrong_value_is_refused_by_check_config_and_run_alike(tmp_path, capsys, kind, name):
    key = (AGENT_KEYS if kind == "agent" else HUB_KEYS)[name]
    path = _file(tmp_path, kind, key.place(_wrong(key.hint)))
    checked, ran = _both(kind, path, capsys)
    assert checked[0] == 2, f"check-config accepted {key} = {_wrong(key.hint)!r}"
    assert f"vigil: {path}: {key.path}: " in checked[1], checked[1]
    assert ran == checked


def _default_value(cell: str) -> Any:
    """The documented default when it is one TOML value (`"10s"`, `true`,
    `[]`, optionally followed by a remark in brackets), else None."""
    m = re.fullmatch(r"`([^`]+)`( \(.*\))?", cell)
    if not m:
        return None
    try:
        return tomllib.loads(f"v = {m.group(1)}")["v"]
    except tomllib.TOMLDecodeError:
        return None


DEFAULTS = [
    (kind, name, value)
    for kind, docs in (("agent", AGENT_DOCS), ("hub", HUB_DOCS))
    for name, cell in sorted(docs.items())
    if (value := _default_value(cell)) is not None
    # a key the table's least valid entry sets: it cannot be left out
    and name.rpartition(".")[2] not in BASE.get(name.rpartition(".")[0], {})
]


def test_most_defaults_are_documented_as_values():
    assert len(DEFAULTS) > 120


@pytest.mark.parametrize(("kind", "name", "value"), DEFAULTS)
def test_the_documented_default_is_the_default(tmp_path, kind, name, value):
    from agent import config as agent_config
    from hub import config as hub_config

    keys = AGENT_KEYS if kind == "agent" else HUB_KEYS
    load = agent_config.load if kind == "agent" else hub_config.load
    key = keys[name]
    without = key.place(_unset)
    _strip(without)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = load(_file(tmp_path / "a", kind, without))
    stated = load(_file(tmp_path / "b", kind, key.place(value)))
    assert _comparable(stated, tmp_path / "b") == _comparable(plain, tmp_path / "a"), key


_unset = object()


def _strip(data: Any) -> None:
    """Take out the key set to `_unset`."""
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for k, v in list(items):
        if v is _unset:
            del data[k]
        elif isinstance(v, (dict, list)):
            _strip(v)


def _comparable(config: Any, tmp: Path) -> str:
    return repr(config).replace(str(tmp), "TMP")
