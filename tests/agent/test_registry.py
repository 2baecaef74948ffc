"""Plugin registries and the config schema built from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from agent.core.registry import Registry
from agent.core.schema import ConfigError, OneOf, build, check_http_url, opt, plugin_options

KINDS: Registry[type[Any]] = Registry("thing type", lambda cls: cls)


@dataclass(frozen=True, kw_only=True)
class Thing:
    name: str
    type: str


@KINDS.register("pipe")
@dataclass(frozen=True, kw_only=True)
class Pipe(Thing):
    command: tuple[str, ...]
    timeout: float = opt(1.0, min=0.0)


@KINDS.register("web")
@dataclass(frozen=True, kw_only=True)
class Web(Thing):
    url: str = opt(check=check_http_url)


@dataclass(frozen=True)
class Options:
    depth: int = 3


class Plugin:
    Options: type | None = None


class WithOptions(Plugin):
    Options = Options


PLUGINS: Registry[type[Plugin]] = Registry("collector", lambda p: p.Options)
PLUGINS.add("deep", WithOptions)
PLUGINS.add("plain", Plugin)


@dataclass(frozen=True)
class Section:
    things: tuple[Annotated[Thing, OneOf(KINDS)], ...] = ()
    enabled: tuple[str, ...] = ()
    options: Mapping[str, Any] = plugin_options(PLUGINS)


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        build(Section, data, "t.toml")
    return [str(p) for p in err.value.problems]


def test_the_type_key_picks_the_class():
    built = build(
        Section,
        {
            "things": [
                {"name": "a", "type": "pipe", "command": ["x"]},
                {"name": "b", "type": "web", "url": "http://h"},
            ]
        },
        "t.toml",
    )
    assert built.things == (
        Pipe(name="a", type="pipe", command=("x",)),
        Web(name="b", type="web", url="http://h"),
    )


def test_type_errors_name_the_key_and_the_choices():
    assert errors({"things": [{"name": "a"}]}) == [
        "t.toml: things[0].type: required: one of 'pipe', 'web'"
    ]
    assert errors({"things": [{"name": "a", "type": "ftp"}]}) == [
        "t.toml: things[0].type: expected one of 'pipe', 'web', got 'ftp'"
    ]


def test_a_key_of_another_type_is_named_as_such():
    assert errors(
        {"things": [{"name": "a", "type": "web", "url": "http://h", "command": ["x"]}]}
    ) == ["t.toml: things[0].command: not used by type 'web' (only by 'pipe')"]
    assert errors(
        {"things": [{"name": "a", "type": "pipe", "command": []}, {"name": "b", "type": "web"}]}
    ) == ["t.toml: things[1].url: required: a string"]


def test_unknown_keys_still_suggest():
    assert (
        'did you mean "timeout"'
        in errors({"things": [{"name": "a", "type": "pipe", "command": [], "timout": 1}]})[0]
    )


def test_plugin_options_sit_beside_the_sections_keys():
    assert build(Section, {}, "t.toml").options == {"deep": Options()}
    assert build(Section, {"deep": {"depth": 5}, "enabled": ["deep"]}, "t.toml").options == {
        "deep": Options(5)
    }
    assert errors({"deep": {"depth": "x"}}) == [
        "t.toml: deep.depth: expected an integer, got str 'x'"
    ]
    assert errors({"plain": {}})[0].startswith("t.toml: plain: unknown key")


def test_a_plugin_registered_twice_is_refused():
    with pytest.raises(RuntimeError, match="registered twice"):
        KINDS.add("pipe", Pipe)


@pytest.mark.parametrize("url", ["http://h", "https://127.0.0.1:8650/x", "http://[::1]:80"])
def test_http_urls(url):
    assert check_http_url(url) is None


@pytest.mark.parametrize("url", ["ftp://h", "http://", "h:80", "http://h:99999", ""])
def test_not_http_urls(url):
    assert "expected an http:// or https:// URL" in (check_http_url(url) or "")


@dataclass(frozen=True, kw_only=True)
class DrillOptions:
    drill_depth: int = opt(3, min=1)
    drill_speed: float = 1.0


@dataclass(frozen=True, kw_only=True)
class SawOptions:
    saw_teeth: int = 40


TOOLS: Registry[type[Any]] = Registry("tool", lambda cls: cls)
TOOLS.add("drill", DrillOptions)
TOOLS.add("saw", SawOptions)


@dataclass(frozen=True)
class Workshop:
    name: str = "shed"
    tools: Mapping[str, Any] = plugin_options(TOOLS, flat=True)


def test_flat_plugin_options_share_one_table():
    """Each plugin owns some of the table's keys; the others are its neighbours'."""
    assert build(Workshop, {}, "t.toml").tools == {
        "drill": DrillOptions(),
        "saw": SawOptions(),
    }
    built = build(Workshop, {"drill_depth": 5, "saw_teeth": 10, "name": "barn"}, "t.toml")
    assert built.tools == {"drill": DrillOptions(drill_depth=5), "saw": SawOptions(saw_teeth=10)}
    assert built.name == "barn"
    with pytest.raises(ConfigError) as err:
        build(Workshop, {"drill_depth": 0, "saw_teth": 1}, "t.toml")
    problems = [str(p) for p in err.value.problems]
    assert problems[0] == (
        't.toml: saw_teth: unknown key (did you mean "saw_teeth"?); '
        "known keys here: drill_depth, drill_speed, name, saw_teeth"
    )
    assert problems[1] == "t.toml: drill_depth: must be at least 1, got 0"


def test_two_flat_plugins_claiming_one_key_are_refused():
    clash: Registry[type[Any]] = Registry("tool", lambda cls: cls)
    clash.add("drill", DrillOptions)
    clash.add("drill2", DrillOptions)

    @dataclass(frozen=True)
    class Clash:
        tools: Mapping[str, Any] = plugin_options(clash, flat=True)

    with pytest.raises(RuntimeError, match="'drill2' and 'drill' both claim the key"):
        build(Clash, {}, "t.toml")


def test_a_scope_forgets_what_was_registered_inside():
    with KINDS.scope():
        KINDS.add("extra", Pipe)
        assert "extra" in KINDS
    assert "extra" not in KINDS and list(KINDS) == ["pipe", "web"]


def test_a_lazy_plugin_is_imported_when_first_looked_up(tmp_path, monkeypatch):
    """Its name is known (listed, `in`, offered in errors) before its module
    loads; looking it up imports the module, which registers it, in the
    declared order; a module that registers nothing is named in the error."""
    import sys

    from agent.core.registry import Registry

    reg: Registry[type] = Registry("widget", lambda cls: cls)
    (tmp_path / "lazy_widget_a.py").write_text(
        "from tests.agent.test_registry import LAZY\n@LAZY.register('a')\nclass A: pass\n"
    )
    (tmp_path / "lazy_widget_none.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "LAZY", reg, raising=False)
    reg.lazy("a", "lazy_widget_a")
    reg.lazy("none", "lazy_widget_none")
    reg.add("b", int)
    assert list(reg) == ["a", "none", "b"] and "a" in reg and len(reg) == 3
    assert "lazy_widget_a" not in sys.modules
    assert reg["a"].__name__ == "A" and "lazy_widget_a" in sys.modules
    assert list(reg) == ["a", "none", "b"]
    with pytest.raises(RuntimeError, match="lazy_widget_none did not register widget 'none'"):
        reg.items()
