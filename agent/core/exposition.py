"""The Prometheus text exposition format (version 0.0.4), so an existing
Prometheus can scrape the agent. Samples carry no timestamp: Prometheus
stamps a scrape itself, and stale series then vanish as they should."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from agent.core.records import Metric, Spec

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def labels_text(labels: Mapping[str, str]) -> str:
    """`k="v",...` in key order, values escaped: the inside of `{...}`."""
    return ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(labels.items()))


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric], specs: Mapping[str, Spec]) -> str:
    """Group samples by name, each family once with its HELP and TYPE."""
    # The newest sample of each series: a collector may send an older one
    # first (a counter's implicit 0 before its first value).
    latest: dict[tuple[str, tuple[tuple[str, str], ...]], Metric] = {}
    for m in metrics:
        key = (m.name, tuple(sorted(m.labels.items())))
        if key not in latest or m.ts >= latest[key].ts:
            latest[key] = m
    families: dict[str, list[Metric]] = {}
    for m in latest.values():
        families.setdefault(m.name, []).append(m)
    lines: list[str] = []
    for name in sorted(families):
        samples = families[name]
        spec = specs.get(name)
        help_text = spec.help if spec else name.replace("_", " ")
        lines.append(f"# HELP {name} {escape_help(help_text)}")
        lines.append(f"# TYPE {name} {spec.type if spec else samples[0].type}")
        for m in samples:
            if m.labels:
                lines.append(f"{name}{{{labels_text(m.labels)}}} {format_value(m.value)}")
            else:
                lines.append(f"{name} {format_value(m.value)}")
    return "\n".join(lines) + "\n" if lines else ""
