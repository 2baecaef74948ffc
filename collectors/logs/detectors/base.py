"""The one interface of the log detectors (docs/logs.md, "Detectors"), and
their registry.

A detector is one module of this package: a `Detector` subclass registered
with `@DETECTORS.register(NAME)`, NAME being the word `[[logs]] detectors =
[...]` uses, and one import line in the package's `__init__.py`. The class
declares everything the agent needs to run it:

- `Options`: its config dataclass (None: no options). Its fields are keys
  of the one flat `[log_detectors]` table, so each carries the detector's
  prefix (`auth_threshold`); the schema refuses a key two detectors claim.
- `default_on`: whether a table that does not list `detectors` runs it.
- `takes`, how the tailer feeds it (rules.py does, per [[logs]] table):
    "lines"   `feed()` gets each line one of its `patterns` finds (for
              JSON logs: the message), found by the table's one scan, so
              the lines it does not want cost it nothing;
    "errors"  `feed()` gets each error line: one a rule matched (`rule`
              names the most severe), one ERROR_PATTERNS finds, or a JSON
              line whose level field is in ERROR_LEVELS. A finding with
              `fold` fields is about that line: when the line is a rule
              event, they go into that event instead of an event of their own;
    "reads"   `observe()` gets each read: the file and its number of lines.
- `event_type`: the type of the events its findings become.
- `specs` and `samples()`: the counters it exports, as committed.
- `state_part`: where its `snapshot()` is kept. None: in the tailer's
  `tail` state under its name; a name: a checkpoint part of its own,
  written only when it changed (for a state that is large).

Everything in a detector is pure: no file or network I/O and no clock. The
tailer passes each line with the time it read it (`now`, float seconds) and
turns every `Finding` into an event record. A detector's state is a plain
dict from `snapshot()` (msgpack- and JSON-able) that the tailer persists
and hands back to `configured()`; a snapshot that cannot be read gives a
fresh detector rather than an error, because lost detector state must
never stop the agent. The tailer builds every registered detector, whether
a table runs it or not, so its state outlives a table that turns it off.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from agent.core.records import Spec
from agent.core.registry import Registry

Takes = Literal["lines", "errors", "reads"]
Sample = tuple[str, dict[str, str], float]  # counter name, labels, value


@dataclass(frozen=True)
class Finding:
    """What a detector reports; the tailer turns it into an event record."""

    detector: str  # the event's `detector` field: "auth" | "volume" | "new_error"
    severity: str  # "critical" | "high" | "medium" | "low" | "info"
    message: str  # one human line
    fields: dict[str, Any]
    # "errors" detectors: what to add to the line's own rule event, if it
    # is one, instead of sending this finding as an event of its own
    fold: dict[str, Any] | None = None


class Detector(ABC):
    """A detector beyond plain patterns (see the module docstring)."""

    Options: ClassVar[type[Any] | None] = None
    default_on: ClassVar[bool] = True
    takes: ClassVar[Takes]
    patterns: ClassVar[tuple[str, ...]] = ()  # "lines": what a line must match to be fed
    event_type: ClassVar[str] = "log"
    specs: ClassVar[tuple[Spec, ...]] = ()
    state_part: ClassVar[str | None] = None

    @classmethod
    @abstractmethod
    def configured(cls, options: Any, state: Any) -> Detector:
        """A detector with `options` (an `Options` object, or None), restored
        from `state` (an earlier `snapshot()`; None: fresh)."""

    def feed(self, line: str, file: str, now: float, rule: str | None = None) -> list[Finding]:
        """ "lines" and "errors": one line, decoded (for JSON logs, the message)."""
        return []

    def observe(self, file: str, lines: int, now: float) -> list[Finding]:
        """ "reads": `lines` complete lines were read from `file`."""
        return []

    @abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """The state to persist: msgpack- and JSON-able."""

    def samples(self) -> list[Sample]:
        """The counters of `specs`, as they are now."""
        return []


DETECTORS: Registry[type[Detector]] = Registry("log detector", lambda cls: cls.Options)


def default_names() -> tuple[str, ...]:
    """What `[[logs]] detectors` is when a table does not say."""
    return tuple(name for name, cls in DETECTORS.items() if cls.default_on)


def build_all(
    options: Mapping[str, Any] | None = None, states: Mapping[str, Any] | None = None
) -> dict[str, Detector]:
    """Every registered detector, in registration order: configured with
    `options` (name -> Options object; defaults for the missing ones) and
    restored from `states` (name -> snapshot)."""
    options, states = options or {}, states or {}
    built = {}
    for name, cls in DETECTORS.items():
        opts = options.get(name)
        if opts is None and cls.Options is not None:
            opts = cls.Options()
        built[name] = cls.configured(opts, states.get(name) or None)
    return built


# Error lines, for the "errors" detectors: level words, Apache/nginx
# `[error]`, logfmt/JSON `level=error`, klog `E1126 10:00:00.123456 1
# server.go:12]`. Separate patterns, each holding a literal the matcher's
# fast path can look for (a pattern without one is scanned by `re`, at a
# tenth of the speed).
ERROR_PATTERNS: tuple[str, ...] = (
    r"\b(?:ERROR|FATAL|CRITICAL|CRIT|SEVERE|PANIC|EMERG|ALERT)\b",
    r"\[(?:[\w-]*:)?(?:error|crit|alert|emerg)\]",
    r"\b(?:level|lvl|severity)\"?\s*[=:]\s*\"?"
    r"(?:[Ee]rr(?:or)?|ERR(?:OR)?|eror|[Cc]rit(?:ical)?|CRIT(?:ICAL)?|[Ff]atal|FATAL"
    r"|[Pp]anic|PANIC|[Ee]merg(?:ency)?|EMERG|[Aa]lert|ALERT)\b",
    r"^[EF]\d{4} \d{2}:\d{2}:\d{2}\.\d+ +\d+ [\w.-]+\.go:\d+\]",
)
ERROR_PATTERN = "|".join(f"(?:{p})" for p in ERROR_PATTERNS)
# JSON logs: the values of the level field (lower-cased) that make an error line
ERROR_LEVELS = frozenset({"error", "err", "fatal", "critical", "crit", "alert", "emerg", "panic"})
