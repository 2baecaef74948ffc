"""Parse what a Nagios-style plugin prints: its message, long text and perfdata.

The plugin API (Nagios 3+, Monitoring Plugins guidelines section 2.6)::

    TEXT OUTPUT | OPTIONAL PERFDATA
    LONG TEXT LINE 1
    LONG TEXT LINE N | PERFDATA LINE 2
    PERFDATA LINE 3

The first line is the message, up to its first '|'. Later lines are long
text until one holds a '|': what follows it, and every line after, is
perfdata. Perfdata is a space-separated list of
`'label'=value[UOM];[warn];[crit];[min];[max]`; a label needs single
quotes if it holds spaces, '=' or quotes, and '' inside quotes is one '.

Leniency, since plugins in the wild are sloppy and one bad item must not
cost the others: an item whose label, value or UOM cannot be read (or
whose value is "U", undetermined) is skipped; a warn, crit, min or max
that cannot be read becomes None and the item is kept. Nothing raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from collectors.checks.model import Perf

# UOM -> (multiplier, divisor, base unit). A divisor rather than a fractional
# multiplier keeps 12.4ms exactly 0.0124 s.
#
# KB/MB/GB/TB are powers of 1000. The guidelines list the UOMs ("B - bytes
# (also KB, MB, TB)") without saying which base; Icinga 2 since 2.11
# normalises KB..TB as SI (powers of 1000) and KiB..TiB as powers of 1024,
# which is also what the prefixes mean (IEC 80000-13), so we follow it; the
# IEC spellings are accepted for plugins that want 1024. (Icinga 2 before
# 2.11 used 1024 for KB: a plugin written against it reads up to 10% low at
# TB.) Monitoring Plugins' own check_disk sidesteps this by printing B.
UNITS: dict[str, tuple[int, int, str]] = {
    "": (1, 1, ""),
    "s": (1, 1, "s"),
    "ms": (1, 1000, "s"),
    "us": (1, 1_000_000, "s"),
    "%": (1, 1, "percent"),
    "B": (1, 1, "bytes"),
    "KB": (1000, 1, "bytes"),
    "kB": (1000, 1, "bytes"),
    "MB": (1000**2, 1, "bytes"),
    "GB": (1000**3, 1, "bytes"),
    "TB": (1000**4, 1, "bytes"),
    "KiB": (1024, 1, "bytes"),
    "MiB": (1024**2, 1, "bytes"),
    "GiB": (1024**3, 1, "bytes"),
    "TiB": (1024**4, 1, "bytes"),
    "c": (1, 1, "counter"),
}

# A C-locale decimal number, as the guidelines ask ("[-0-9.]"); exponents
# too, which some plugins print. Not Python's float(): no "nan", "inf", "1_0".
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(_NUMBER)
_VALUE_RE = re.compile(rf"({_NUMBER})(.*)", re.DOTALL)
# A quoted label ('' is a quote) or a bare one, then '=' and the rest of the item.
_ITEM_RE = re.compile(r"(?:'((?:[^']|'')*)'|([^\s'=][^\s=]*))=(\S*)")
_NONSPACE_RE = re.compile(r"\S")
_SPACE_RE = re.compile(r"\s")


def parse_plugin_output(stdout: str) -> tuple[str, str, tuple[Perf, ...]]:
    """(message, long text, perfdata) from a plugin's standard output."""
    lines = [line.rstrip("\r") for line in stdout.split("\n")]
    message, _, first_perf = lines[0].partition("|")
    perf_texts = [first_perf]
    long_lines: list[str] = []
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_texts.append(line)
            continue
        text, bar, rest = line.partition("|")
        long_lines.append(text.rstrip())
        if bar:
            perf_texts.append(rest)
            in_perf = True
    long_text = "\n".join(long_lines).strip("\n")
    perf = tuple(item for text in perf_texts for item in parse_perfdata(text))
    return message.strip(), long_text, perf


def parse_perfdata(text: str) -> Iterator[Perf]:
    """The readable items of one perfdata line, in order."""
    pos = 0
    while (start := _NONSPACE_RE.search(text, pos)) is not None:
        m = _ITEM_RE.match(text, start.start())
        if m is None:  # not an item: skip this whitespace-separated token
            space = _SPACE_RE.search(text, start.start())
            pos = space.start() if space else len(text)
            continue
        pos = m.end()
        quoted, bare, rest = m.groups()
        label = quoted.replace("''", "'") if quoted is not None else bare
        item = _item(label, rest)
        if item is not None:
            yield item


def _item(label: str, rest: str) -> Perf | None:
    if not label.strip():
        return None
    fields = rest.split(";")
    m = _VALUE_RE.fullmatch(fields[0])  # "U" (undetermined) does not match: skipped
    if m is None or m.group(2) not in UNITS:
        return None
    mul, div, unit = UNITS[m.group(2)]
    value = _scaled(float(m.group(1)), mul, div)
    if value is None:
        return None
    fields += [""] * (5 - len(fields))  # trailing empty fields may be dropped
    return Perf(
        label=label,
        value=value,
        unit=unit,
        warn=_upper(fields[1], mul, div),
        crit=_upper(fields[2], mul, div),
        min=_plain(fields[3], mul, div),
        max=_plain(fields[4], mul, div),
    )


def _scaled(number: float, mul: int, div: int) -> float | None:
    value = number * mul / div  # 1e400 reads as inf: dropped here
    return value if math.isfinite(value) else None


def _plain(text: str, mul: int, div: int) -> float | None:
    """A plain number (min, max) in base units; None if absent, "U" or unreadable."""
    if not _NUMBER_RE.fullmatch(text):
        return None
    return _scaled(float(text), mul, div)


def _upper(text: str, mul: int, div: int) -> float | None:
    """The value above which a threshold range alerts, in base units.

    Range syntax (guidelines section 2.5): "10" is 0:10, "10:20", "~:10"
    (no lower end), "10:" (no upper end), "@10:20" (alert inside). Only a
    range that alerts above a finite upper end has one to report: "10:"
    alerts below 10 and "@..." inside, so both are None, as is an invalid
    range (start above end).
    """
    if text.startswith("@"):
        return None
    start, _, end = text.rpartition(":")
    if not _NUMBER_RE.fullmatch(end):
        return None
    upper = float(end)
    if start == "~":
        return _scaled(upper, mul, div)
    if start and not _NUMBER_RE.fullmatch(start):
        return None
    lower = float(start) if start else 0.0  # "10" and ":10" both start at 0
    if lower > upper:
        return None
    return _scaled(upper, mul, div)
