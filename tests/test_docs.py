"""The documentation covers what the code has: every metric a collector can
emit is in docs/metrics.md, every configuration key in docs/configuration.md."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from agent.alerts.service import SPECS as ALERTING_SPECS
from agent.config import Config
from agent.core.schema import OneOf
from agent.selfmetrics import SelfCollector
from agent.shipper import SPECS as SHIPPER_SPECS
from collectors import HOST_COLLECTORS
from collectors.checks.service import CheckCollector
from collectors.logs.tailer import LogCollector

DOCS = Path(__file__).parents[1] / "docs"


def test_every_metric_is_documented_once_with_its_type():
    text = (DOCS / "metrics.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (gauge|counter|summary) \|", text, re.M)
    documented = dict(rows)
    assert len(rows) == len(documented), "a metric is documented twice"
    specs = [s for cls in [*HOST_COLLECTORS.values(), SelfCollector] for s in cls.specs]
    specs += [*SHIPPER_SPECS, *LogCollector.specs, *ALERTING_SPECS, *CheckCollector.specs]
    for spec in specs:
        assert documented.get(spec.name) == spec.type, spec.name
    assert set(documented) == {s.name for s in specs}, "documented metrics nobody emits"


def _keys(cls, prefix=""):
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if "plugins" in f.metadata:  # plugin_options: each plugin's own keys
            for name, options in f.metadata["plugins"].configs().items():
                yield from _keys(options, prefix if f.metadata["flat"] else f"{prefix}{name}.")
            continue
        tp = hints[f.name]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is tuple and args:
            tp = args[0]  # an array of tables: [[logs]], [[logs.rules]]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Annotated and isinstance(args[1], OneOf):
            # a table whose type picks its class: the keys of every type
            seen = set()
            for kind in args[1].registry.configs().values():
                for key in _keys(kind, f"{prefix}{f.name}."):
                    if key not in seen:
                        seen.add(key)
                        yield key
        elif dataclasses.is_dataclass(tp):
            yield from _keys(tp, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name.removesuffix("_")


def test_every_config_key_is_documented():
    text = (DOCS / "configuration.md").read_text()
    tables = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"^#+ `\[\[?([a-z_.]+)\]?\]`", line):
            current = m.group(1)
            tables[current] = set()
        elif current and (m := re.match(r"^\| `([a-z_]+)` \|", line)):
            tables[current].add(m.group(1))
    keys = list(_keys(Config))
    assert "host.network.include_loopback" in keys and "agent.interval" in keys
    assert "logs.rules.pattern" in keys and "checks.body_regex" in keys
    for key in keys:
        table, _, name = key.rpartition(".")
        assert name in tables.get(table, set()), f"[{table}] {name} is not in docs/configuration.md"
