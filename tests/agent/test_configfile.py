"""Drop-in files (agent/core/configfile.py): merged in name order over the
main file, arrays of tables appended, anything else replaced, each value
remembered with its file; and the TOML `check-config --show` writes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import config as agent_config
from agent.core.configfile import Origins, merge, read_merged, to_toml
from agent.core.schema import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_tables_merge_key_by_key_arrays_of_tables_append_the_rest_is_replaced():
    origins = Origins("main.toml")
    base: dict = {}
    merge(
        base,
        {
            "agent": {"interval": "10s", "host_id": "a"},
            "checks": [{"name": "one"}],
            "alerting": {"disable": ["X", "Y"]},
        },
        "main.toml",
        origins,
    )
    merge(
        base,
        {
            "agent": {"interval": "5s"},
            "checks": [{"name": "two"}, {"name": "three"}],
            "alerting": {"disable": ["Z"]},
            "hub": {"url": "http://h"},
        },
        "10-x.toml",
        origins,
    )
    assert base == {
        "agent": {"interval": "5s", "host_id": "a"},
        "checks": [{"name": "one"}, {"name": "two"}, {"name": "three"}],
        "alerting": {"disable": ["Z"]},
        "hub": {"url": "http://h"},
    }
    assert origins.file_of("agent.interval") == "10-x.toml"
    assert origins.file_of("agent.host_id") == "main.toml"
    assert origins.file_of("checks[0].name") == "main.toml"
    assert origins.file_of("checks[2].url") == "10-x.toml"
    assert origins.file_of("alerting.disable[0]") == "10-x.toml"
    assert origins.file_of("hub.token") == "10-x.toml"
    assert origins.file_of("nothing.set") == "main.toml"


def test_a_value_replaced_by_a_table_forgets_the_files_under_it():
    origins = Origins("main.toml")
    base: dict = {}
    merge(base, {"host": {"disk": {"exclude_mounts": ["/a"]}}}, "main.toml", origins)
    merge(base, {"host": {"disk": "oops"}}, "20.toml", origins)
    merge(base, {"host": {"disk": {"include_mounts": []}}}, "30.toml", origins)
    assert base == {"host": {"disk": {"include_mounts": []}}}
    assert origins.file_of("host.disk.exclude_mounts") == "30.toml"


def _layout(tmp_path: Path, main: str | None, drop_ins: dict[str, str]) -> Path:
    path = tmp_path / "agent.toml"
    if main is not None:
        path.write_text(main)
    (tmp_path / "agent.d").mkdir()
    for name, text in drop_ins.items():
        (tmp_path / "agent.d" / name).write_text(text)
    return path


def test_drop_ins_are_read_in_name_order_and_only_toml_files_not_hidden(tmp_path):
    path = _layout(
        tmp_path,
        '[agent]\ninterval = "10s"\n',
        {
            "20-b.toml": '[agent]\ninterval = "2s"\n',
            "10-a.toml": '[agent]\ninterval = "1s"\n',
            ".#10-a.toml": "not toml at all =",
            "30-c.toml.dpkg-old": "not toml at all =",
            "README": "not toml at all =",
        },
    )
    origins = read_merged(path, tmp_path / "unused.toml")
    assert origins is not None
    assert [Path(f).name for f in origins.files] == ["agent.toml", "10-a.toml", "20-b.toml"]
    assert agent_config.load(path).agent.interval == 2.0


def test_drop_ins_alone_apply_over_the_defaults_when_the_main_file_is_absent(tmp_path):
    default = _layout(tmp_path, None, {"10.toml": '[agent]\ninterval = "3s"\n'})
    origins = read_merged(None, default)
    assert origins is not None and origins.main == "(built-in defaults)"
    assert origins.data == {"agent": {"interval": "3s"}}


def test_every_broken_file_is_named_at_once(tmp_path):
    path = _layout(tmp_path, '[agent]\ninterval = "10s"\n', {"10.toml": "a = = 1\n"})
    (tmp_path / "agent.d" / "20.toml").write_bytes(b"\xff\xfe = 1\n")  # not UTF-8
    with pytest.raises(ConfigError) as caught:
        read_merged(path, path)
    files = [p.file for p in caught.value.problems]
    assert files == [str(tmp_path / "agent.d/10.toml"), str(tmp_path / "agent.d/20.toml")]


def test_a_drop_in_directory_that_is_a_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("")
    (tmp_path / "agent.d").write_text("")
    with pytest.raises(ConfigError) as caught:
        read_merged(path, path)
    assert str(caught.value) == f"{tmp_path / 'agent.d'}: cannot read: not a directory"


def test_schema_errors_name_the_file_that_set_the_key(tmp_path):
    path = _layout(
        tmp_path,
        '[agent]\ninterval = "10s"\n[[checks]]\nname = "a"\ntype = "tcp"\naddress = "h:1"\n',
        {
            "10.toml": '[agent]\nintervall = "1s"\n[[checks]]\nname = "a"\ntype = "tcp"\n'
            'address = "h:2"\n[[alerts]]\nname = "r"\nexpr = "cpu_usage_percent > 1"\n'
            'notify = ["pager"]\n',
        },
    )
    with pytest.raises(ConfigError) as caught:
        agent_config.load(path)
    where = {(Path(p.file).name, p.path) for p in caught.value.problems}
    assert where == {
        ("10.toml", "agent.intervall"),
        ("10.toml", "checks[1].name"),
        ("10.toml", "alerts[0].notify[0]"),
    }, caught.value


# TOML values as tomllib returns them (no dates: they need no more than isoformat)
_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(st.characters(exclude_categories=["Cs"]))
)
_keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_to_toml_gives_back_what_it_was_given(data):
    text = to_toml(data, lambda path: "a file")
    assert _same(tomllib.loads(text), data), text


def test_show_quotes_file_names_a_comment_could_not_hold(tmp_path):
    """A drop-in named with a line break would have put TOML of its own
    into --show's output; one that is not UTF-8 made it unreadable."""
    from agent.core.configfile import show

    names = ["caf\udce9.toml", "x\n[api]\nallow_remote = true\n#.toml"]
    origins = Origins("main.toml")
    for name in names:
        origins.files.append(name)
        merge(origins.data, {"agent": {"interval": "1s"}}, name, origins)
    text = show(origins)
    text.encode()  # UTF-8, as TOML must be
    assert tomllib.loads(text) == {"agent": {"interval": "1s"}}
    assert '# "x\\n[api]\\nallow_remote = true\\n#.toml"' in text


def test_a_drop_in_that_is_not_a_regular_file_is_named_not_read(tmp_path):
    import os

    path = _layout(tmp_path, "", {})
    os.mkfifo(tmp_path / "agent.d" / "10-fifo.toml")  # reading it would block for ever
    (tmp_path / "agent.d" / "20-dir.toml").mkdir()
    with pytest.raises(ConfigError) as caught:
        read_merged(path, path)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}/agent.d/10-fifo.toml: not a regular file",
        f"{tmp_path}/agent.d/20-dir.toml: not a regular file",
    ]
