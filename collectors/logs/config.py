"""The `[[logs]]` tables: which files to follow and what to look for in them.
Every key is documented in docs/configuration.md; the behaviour in docs/logs.md."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.core.schema import (
    Duration,
    Invalid,
    Size,
    check_identifier,
    check_regex,
    opt,
    plugin_options,
)
from collectors.logs.detectors.base import DETECTORS, default_names

SEVERITIES = ("critical", "high", "medium", "low", "info")
# Rotated files that logrotate compressed: never read as text. Matched
# against the file name, so "*.log*" globs skip app.log.2.gz.
COMPRESSED = ("*.gz", "*.bz2", "*.xz", "*.zst", "*.lz4", "*.zip", "*.Z")


def _check_detector(value: str) -> str | None:
    return None if value in DETECTORS else f"expected one of {', '.join(DETECTORS)}"


def _check_glob(value: str) -> str | None:
    if not value.startswith("/"):
        return f"must be an absolute path or glob, got {value!r}"
    return None


def _check_pattern(value: str) -> str | None:
    if err := check_regex(value):
        return err
    try:  # the scan runs on bytes: a \u escape, say, is valid only on str
        re.compile(value.encode())
    except (re.error, UnicodeEncodeError) as exc:
        return f"not usable on raw log bytes ({exc}): {value!r}"
    return None


def _check_access_regex(value: str) -> str | None:
    if not value:
        return None
    if err := _check_pattern(value):
        return err
    from collectors.logs.access import check_regex_groups

    return check_regex_groups(value)


def _check_match(values: dict[str, str]) -> str | None:
    for key, pattern in values.items():
        if err := check_regex(pattern):
            return f"{key}: {err}"
    return None


@dataclass(frozen=True)
class RuleConfig:
    name: str = opt(check=check_identifier)
    # A Python regular expression searched in each line (for JSON logs: in
    # the message field). Empty: only `match` decides.
    pattern: str = opt("", check=_check_pattern)
    severity: Literal["critical", "high", "medium", "low", "info"] = "medium"
    # Named groups of `pattern` to put in the event; empty: all of them.
    fields: tuple[str, ...] = ()
    # JSON logs: field -> regex the field's whole value must match.
    match: dict[str, str] = opt(factory=dict, check=_check_match)

    def __post_init__(self) -> None:
        if not self.pattern and not self.match:
            raise Invalid("a rule needs a pattern, a match, or both", key="pattern")
        groups = set(re.compile(self.pattern).groupindex) if self.pattern else set()
        missing = [f for f in self.fields if f not in groups]
        if missing:
            raise Invalid(
                f"{', '.join(missing)} not a named group of the pattern "
                f"(write them as (?P<name>...))",
                key="fields",
            )


# What a stack trace's own lines look like: a record starts at a line that
# is none of them (collectors/logs/files.py, multi-line events)
MULTILINE_PRESETS = {
    # blank lines, indented frames and code; "Traceback (most recent call last):"; the
    # chained-exception headers; the exception line ("ValueError: ...")
    "python_traceback": r"^(?!$|\s|Traceback \(most recent call last\)|During handling of the above"
    r"|The above exception was|(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt"
    r"|Warning)(?::|$))",
    # "\tat ...", "... 12 more", "Caused by: ...", "Suppressed: ...", and the
    # exception line ("java.lang.IllegalStateException: ...")
    "java_stacktrace": r"^(?!$|\s|\.\.\. \d+ (?:more|common frames omitted)|Caused by: "
    r"|Suppressed: |(?:[a-zA-Z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)(?::|$))",
}


def _check_preset(value: str) -> str | None:
    if value and value not in MULTILINE_PRESETS:
        return f"expected one of {', '.join(map(repr, MULTILINE_PRESETS))}, got {value!r}"
    return None


@dataclass(frozen=True)
class MultilineConfig:
    """`multiline = { start = "REGEX" }` or `{ preset = "python_traceback" }`."""

    start: str = opt("", check=lambda v: _check_pattern(v) if v else None)
    preset: str = opt("", check=_check_preset)

    def __post_init__(self) -> None:
        if bool(self.start) == bool(self.preset):
            raise Invalid("set start (a regex) or preset, one of them", key="start")

    @property
    def pattern(self) -> str:
        return self.start or MULTILINE_PRESETS[self.preset]


@dataclass(frozen=True)
class LogsConfig:
    paths: tuple[str, ...] = opt(each=_check_glob)
    exclude: tuple[str, ...] = COMPRESSED
    # text and json lines; or an access log whose lines also count requests
    # (collectors/logs/access.py)
    format: Literal["text", "json", "nginx_combined", "apache_combined", "regex"] = "text"
    regex: str = opt("", check=_check_access_regex)  # format = "regex": its named groups
    duration_window: Duration = opt(300.0, min=1.0)  # access logs' latency quantiles
    # lines that make one event (a stack trace): held for their continuation
    multiline: MultilineConfig | None = None
    multiline_timeout: Duration = opt(2.0, min=0.05)
    # Where to start in files that exist when this table is first used;
    # files that appear later are always read from their beginning.
    start_at: Literal["end", "beginning"] = "end"
    encoding: str = "utf-8"
    max_line_bytes: Size = opt(64 * 1024, min=256)
    # A periodic stat of every file, on top of change notifications, so a
    # lost notification costs at most this much delay.
    poll_interval: Duration = opt(2.0, min=0.05)
    watch: Literal["auto", "poll"] = "auto"
    # How long to keep reading a file after it was rotated away or deleted
    # and stopped growing: writers that have not reopened it yet still write.
    rotate_wait: Duration = opt(5.0, min=0.0)
    json_message_key: str = "message"
    json_level_key: str = "level"
    context_lines: int = opt(3, min=0)
    events_per_minute: int = opt(20, min=1)  # per rule; the rest are counted in a summary
    default_rules: bool = True
    detectors: tuple[str, ...] = opt(factory=default_names, each=_check_detector)
    rules: tuple[RuleConfig, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.paths:
            raise Invalid("needs at least one path or glob", key="paths")
        if self.multiline is not None and self.format == "json":
            message = "a JSON line is one event already: multiline is for text"
            raise Invalid(message, key="multiline")
        if self.duration_window != 300.0 and self.format in ("text", "json"):
            message = "only access-log formats (nginx_combined, apache_combined, regex) have it"
            raise Invalid(message, key="duration_window")
        if (self.format == "regex") != bool(self.regex):
            raise Invalid(
                'format = "regex" and regex go together: the regex names the fields',
                key="regex" if self.regex else "format",
            )
        try:  # decoded as the tailer decodes: a bad byte becomes U+FFFD, never fatal
            b"\xff line".decode(self.encoding, "replace")
        except LookupError:
            raise Invalid(f"unknown encoding {self.encoding!r}", key="encoding") from None
        except UnicodeError as exc:  # "undefined", "idna": no replacement of bad bytes
            raise Invalid(
                f"encoding {self.encoding!r} cannot read log lines ({exc})", key="encoding"
            ) from None
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise Invalid(f"rule names must be unique: {', '.join(dupes)}", key="rules")

    def excludes(self, path: str) -> bool:
        """Whether `exclude` leaves out the file at `path` (by name or path)."""
        name = os.path.basename(path)
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in self.exclude)


def base_dir(pattern: str) -> str:
    """The deepest directory of `pattern` without glob characters."""
    parts = pattern.split(os.sep)
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return os.sep.join(parts[:i]) or os.sep
    return os.path.dirname(pattern) or os.sep


@dataclass(frozen=True)
class LogDetectorsConfig:
    """`[log_detectors]`: tuning shared by every [[logs]] table that enables a
    detector. Each detector's module declares the keys it owns (`auth_threshold`)."""

    options: Mapping[str, Any] = plugin_options(DETECTORS, flat=True)


_JOURNAL_MATCH = re.compile(r"[A-Z0-9_]+=.*", re.S)


def _check_journal_match(value: str) -> str | None:
    if value == "+" or _JOURNAL_MATCH.fullmatch(value):
        return None
    return (
        'expected "FIELD=value" (FIELD in capitals, e.g. "_SYSTEMD_UNIT=ssh.service") '
        f'or "+", got {value!r}'
    )


def _hidden(default: Any) -> Any:
    """A [[logs]] key that means nothing for the journal: not a TOML key here."""
    return field(default=default, init=False)


@dataclass(frozen=True)
class JournalConfig(LogsConfig):
    """A `[[journal]]` table: the [[logs]] keys that apply to the journal
    (rules, default_rules, detectors, events_per_minute, context_lines,
    start_at, max_line_bytes, poll_interval), validated as there, plus
    `matches` and `directory`. `paths` holds the table's label, which is
    also its `file` label and the key of its saved state."""

    # journalctl's matches: "FIELD=value" (same field: OR, different: AND), "+" for OR
    matches: tuple[str, ...] = opt((), each=_check_journal_match)
    # journalctl --directory: journal files in DIR (tests, containers);
    # default: the system journal
    directory: Path | None = None
    paths: tuple[str, ...] = _hidden(())
    exclude: tuple[str, ...] = _hidden(())
    format: Any = _hidden("text")
    regex: str = _hidden("")
    duration_window: Any = _hidden(300.0)
    multiline: Any = _hidden(None)
    multiline_timeout: Any = _hidden(2.0)
    encoding: str = _hidden("utf-8")
    watch: Any = _hidden("auto")  # the journal's directories, for a prompt wake-up
    rotate_wait: Any = _hidden(0.0)
    json_message_key: str = _hidden("message")
    json_level_key: str = _hidden("level")

    def __post_init__(self) -> None:
        if self.matches and ("+" in (self.matches[0], self.matches[-1])):
            raise Invalid('"+" must stand between two matches', key="matches")
        if any(a == b == "+" for a, b in zip(self.matches, self.matches[1:])):
            raise Invalid('"+" must stand between two matches', key="matches")
        object.__setattr__(self, "paths", (self.label,))
        super().__post_init__()

    @property
    def label(self) -> str:
        """`journal`, then `:DIRECTORY` and `:MATCHES` (space-separated) when set."""
        parts = ["journal"]
        if self.directory is not None:
            parts.append(str(self.directory))
        if self.matches:
            parts.append(" ".join(self.matches))
        return ":".join(parts)
