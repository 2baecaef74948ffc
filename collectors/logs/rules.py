"""Lines in, events and counters out: rules, detectors and rate limits.

Text logs go through one multi-pattern scan per chunk (matcher.py): the
rules, the patterns of the detectors fed lines (the failed-login prefilter)
and the error-level patterns together, so a line that nothing matches costs
no Python at all. Only matched lines are decoded. JSON logs are parsed line
by line (a rule can test fields), but only the lines whose raw bytes hold
something a rule or detector needs (prefilter.py); the others cannot match
and are skipped unparsed.

Every matching line counts in `log_matches_total{rule, file}` for each rule
that matches it, and is one event listing them all (`rules`; `rule` and the
severity are the most severe one's), with the line, the rules' named groups
and `context_lines` lines before it, and whether its error signature is new.
At most `events_per_minute` events per rule: an event goes out if any of
its rules has allowance left; a line none of whose rules has is counted as
suppressed for each, and the rest of a storm is one summary event per rule
and minute with the number not sent.

Detectors are fed as each declares (detectors/base.py): lines their
patterns find, error lines, or whole reads. A finding about an error line
(a new signature) goes into that line's event, or is an event of its own
when the line sends none; any other finding is an event of its own, of the
detector's `event_type` (failed logins: `security`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from agent.core.records import MAX_TEXT, Event, encodable, text_of, valid_text
from collectors.logs.access import AccessMetrics
from collectors.logs.config import SEVERITIES, LogsConfig, RuleConfig
from collectors.logs.defaults import DEFAULT_RULES
from collectors.logs.detectors.base import ERROR_LEVELS, ERROR_PATTERNS, Detector, Finding
from collectors.logs.files import RECORD_SEP, Chunk
from collectors.logs.matcher import Data, build_matcher
from collectors.logs.prefilter import (
    JsonPrefilter,
    Literal,
    all_lines,
    literals_of,
)

log = structlog.get_logger("vigil.collectors.logs")

MAX_EVENT_LINE = 4096  # characters of a line kept in an event
_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # most severe first


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    regex: re.Pattern[str] | None  # on the decoded line (or JSON message)
    fields: tuple[str, ...]
    match: tuple[tuple[str, re.Pattern[str]], ...]  # JSON field -> whole-value regex

    @classmethod
    def from_config(cls, rc: RuleConfig) -> Rule:
        return cls(
            rc.name,
            rc.severity,
            re.compile(rc.pattern) if rc.pattern else None,
            rc.fields,
            tuple((k, re.compile(v)) for k, v in rc.match.items()),
        )

    def extract(self, text: str) -> dict[str, str]:
        if self.regex is None:
            return {}
        m = self.regex.search(text)
        if m is None:
            return {}
        groups = {k: v for k, v in m.groupdict().items() if v is not None}
        return {k: groups[k] for k in self.fields if k in groups} if self.fields else groups


def rules_for(config: LogsConfig) -> list[Rule]:
    """The table's own rules, then the default set (a rule of the same name wins)."""
    rules = [Rule.from_config(r) for r in config.rules]
    if config.default_rules:
        own = {r.name for r in rules}
        rules += [
            Rule(name, severity, re.compile(pattern), (), ())
            for name, pattern, severity in DEFAULT_RULES
            if name not in own
        ]
    return rules


class RateLimiter:
    """At most `per_minute` events per rule in each wall-clock minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.minute: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.suppressed: dict[str, tuple[int, str, str]] = {}  # rule -> (n, file, severity)
        self.suppressed_total: dict[str, int] = {}

    def allow(self, rule: str, now: float) -> bool:
        minute = int(now // 60)
        if self.minute.get(rule) != minute:
            self.minute[rule], self.sent[rule] = minute, 0
        if self.sent[rule] < self.per_minute:
            self.sent[rule] += 1
            return True
        return False

    def suppress(self, rule: str, file: str, severity: str) -> None:
        n = self.suppressed.get(rule, (0, file, severity))[0]
        self.suppressed[rule] = (n + 1, file, severity)
        self.suppressed_total[rule] = self.suppressed_total.get(rule, 0) + 1

    def summaries(self, now: float) -> list[Event]:
        """Summary events for rules whose minute has passed with matches not sent."""
        minute = int(now // 60)
        out = []
        for rule, (n, file, severity) in list(self.suppressed.items()):
            if self.minute.get(rule, minute) < minute:
                del self.suppressed[rule]
                out.append(
                    Event(
                        "log",
                        now,
                        f"{rule}: {n} more matching lines in the last minute, not sent one by one",
                        severity,
                        {"rule": rule, "file": file, "suppressed": n},
                    )
                )
        return out


RECORD_TEXT = RECORD_SEP.decode()


class TableProcessor:
    """Applies one [[logs]] table's rules and detectors to its chunks."""

    def __init__(
        self,
        config: LogsConfig,
        detectors: Mapping[str, Detector],
        matches: dict[tuple[str, str], int],
        limiter: RateLimiter,
        engine: str = "auto",
        access: AccessMetrics | None = None,
    ) -> None:
        self.config = config
        self.access = access  # an access log's request counters (access.py), or None
        self.detectors = detectors  # the host-wide ones, by name; the table feeds its own
        self.matches = matches  # (rule, file) -> lines matched, shared and persisted
        self.line_errors = 0  # lines whose processing raised (a bug): skipped, counted
        self.limiter = limiter
        self.rules = rules_for(config)
        on = [d for name, d in detectors.items() if name in config.detectors]
        self.line_feeds = [d for d in on if d.takes == "lines"]
        self.error_feeds = [d for d in on if d.takes == "errors"]
        self.read_feeds = [d for d in on if d.takes == "reads"]
        # One scan for everything; a detector's patterns only when it is on.
        patterns = [r.regex.pattern if r.regex else "" for r in self.rules]
        self.line_ids: list[range] = []  # of each line_feeds detector's patterns
        for detector in self.line_feeds:
            self.line_ids.append(range(len(patterns), len(patterns) + len(detector.patterns)))
            patterns += detector.patterns
        errors = ERROR_PATTERNS if self.error_feeds else ()
        self.error_ids = frozenset(range(len(patterns), len(patterns) + len(errors)))
        patterns += errors
        # Rules without a pattern only test JSON fields: keep them out of the scan.
        self.scanned = [i for i, p in enumerate(patterns) if p]
        self.engine_name = engine
        self.json_prefilter = config.format == "json"  # False: parse every line
        self.matcher = build_matcher([patterns[i] for i in self.scanned], engine)
        # JSON logs: each line_feeds detector's patterns, searched in the message
        self.line_regexes = [[re.compile(p) for p in d.patterns] for d in self.line_feeds]
        self.json_lines = self._json_prefilter() if config.format == "json" else None
        self.tails: dict[str, list[str]] = {}  # file -> last lines, for context

    @property
    def engine(self) -> str:
        return self.matcher.engine

    def _json_prefilter(self) -> JsonPrefilter:
        """What a JSON line must hold to be worth parsing (prefilter.py)."""
        cfg = self.config
        needs: list[list[Literal] | None] = []
        keys: list[str] = []
        for rule in self.rules:
            if rule.match:  # every key must be there: the longest is the rarest
                keys.append(max((k for k, _ in rule.match), key=len))
            elif rule.regex is not None:
                needs.append(literals_of(rule.regex.pattern))
        for detector in self.line_feeds:
            needs += [literals_of(p) for p in detector.patterns]
        if self.error_feeds:
            needs.append([(level.encode(), True) for level in sorted(ERROR_LEVELS)])
        literals = None if None in needs else [lit for one in needs if one for lit in one]
        reads_message = bool(self.line_feeds) or any(r.regex is not None for r in self.rules)
        message_keys = (cfg.json_message_key, "msg") if reads_message else ()
        return JsonPrefilter(literals, keys, message_keys, cfg.encoding, self.engine_name)

    def process(self, chunk: Chunk, now: float, emit: Callable[[Event], None]) -> None:
        if self.config.format == "json":
            self._process_json(chunk, now, emit)
        else:
            self._process_text(chunk, now, emit)
        if self.access is not None:
            self.access.observe(chunk.label, chunk.data, now)
        for detector in self.read_feeds:
            self._findings(detector, detector.observe(chunk.label, chunk.lines, now), now, emit)
        self._remember_tail(chunk)

    def _process_text(self, chunk: Chunk, now: float, emit: Callable[[Event], None]) -> None:
        data = chunk.data
        for start, end, found in self.matcher.scan(data):
            try:
                self._text_line(data, start, end, found, chunk, now, emit)
            except Exception as exc:  # one line must never cost the lines after it
                self._failed(chunk, start, exc)

    def _text_line(
        self,
        data: Data,
        start: int,
        end: int,
        found: frozenset[int],
        chunk: Chunk,
        now: float,
        emit: Callable[[Event], None],
    ) -> None:
        encoding = self.config.encoding
        ids = {self.scanned[i] for i in found}
        line = _text(data[start:end], encoding)
        if self.config.multiline is not None:  # a record: its lines, as they were
            line = line.replace(RECORD_TEXT, "\n")
        hits = [self.rules[i] for i in sorted(ids) if i < len(self.rules)]
        fields = [rule.extract(line) for rule in hits]
        error = bool(self.error_feeds) and (hits or not self.error_ids.isdisjoint(ids))
        self._line(hits, fields, line, line if error else None, chunk, start, now, emit)
        for detector, own in zip(self.line_feeds, self.line_ids):
            if not ids.isdisjoint(own):
                self._findings(detector, detector.feed(line, chunk.label, now), now, emit)

    def _process_json(self, chunk: Chunk, now: float, emit: Callable[[Event], None]) -> None:
        data = chunk.data
        assert self.json_lines is not None
        lines = self.json_lines.lines(data) if self.json_prefilter else all_lines(data)
        for start, end in lines:
            try:
                self._json_line(data, start, end, chunk, now, emit)
            except Exception as exc:  # one line must never cost the lines after it
                self._failed(chunk, start, exc)

    def _failed(self, chunk: Chunk, start: int, exc: Exception) -> None:
        self.line_errors += 1
        log.exception("log_line_failed", file=chunk.label, at=start, error=repr(exc))

    def _json_line(
        self,
        data: Data,
        start: int,
        end: int,
        chunk: Chunk,
        now: float,
        emit: Callable[[Event], None],
    ) -> None:
        cfg = self.config
        raw = _text(data[start:end], cfg.encoding)
        obj = _json_object(raw)
        message = _field_text(obj.get(cfg.json_message_key, obj.get("msg", raw)))
        hits = [r for r in self.rules if _rule_matches(r, obj, message)]
        fields = [{**rule.extract(message), **_json_fields(obj, rule)} for rule in hits]
        level = _field_text(obj.get(cfg.json_level_key, "")).lower() if not hits else ""
        error = bool(self.error_feeds) and (hits or level in ERROR_LEVELS)
        self._line(hits, fields, raw, message if error else None, chunk, start, now, emit)
        for detector, regexes in zip(self.line_feeds, self.line_regexes):
            if any(p.search(message) for p in regexes):
                self._findings(detector, detector.feed(message, chunk.label, now), now, emit)

    def _line(
        self,
        hits: Sequence[Rule],
        fields: Sequence[Mapping[str, Any]],
        line: str,
        error: str | None,
        chunk: Chunk,
        start: int,
        now: float,
        emit: Callable[[Event], None],
    ) -> None:
        """One line's outcome: every rule that matched counts it, and it is one
        event listing them all (if one of them may still send this minute), with
        the error detectors' findings about it folded in. `error`: the text the
        error detectors take, if it is an error line."""
        primary = min(hits, key=lambda r: _RANK.get(r.severity, len(_RANK))) if hits else None
        found: list[tuple[Detector, list[Finding]]] = []
        if error is not None:
            name = primary.name if primary is not None else None
            found = [(d, d.feed(error, chunk.label, now, name)) for d in self.error_feeds]
        if primary is None:
            for detector, findings in found:
                self._findings(detector, findings, now, emit)
            return
        label = chunk.label
        allowed = []
        for rule in hits:
            key = (rule.name, label)
            self.matches[key] = self.matches.get(key, 0) + 1
            allowed.append(self.limiter.allow(rule.name, now))
        if not any(allowed):
            for rule in hits:
                self.limiter.suppress(rule.name, label, rule.severity)
            for detector, findings in found:  # never rate-limited away
                self._findings(detector, findings, now, emit)
            return
        merged: dict[str, Any] = {}
        for extracted in reversed(fields):  # the first rule's value wins
            merged.update(extracted)
        event_fields: dict[str, Any] = {
            "file": label,
            "rule": primary.name,
            "rules": [rule.name for rule in hits],
            "line": line[:MAX_EVENT_LINE],
            "context": self._context(label, chunk.data, start),
            "fields": merged,
            "new_signature": False,  # documented in every rule event; a folded finding sets it
        }
        alone: list[tuple[Detector, list[Finding]]] = []
        for detector, findings in found:
            for f in findings:
                if f.fold is not None:
                    event_fields.update(f.fold)
            alone.append((detector, [f for f in findings if f.fold is None]))
        emit(Event("log", now, line[:MAX_EVENT_LINE], primary.severity, event_fields))
        for detector, findings in alone:
            self._findings(detector, findings, now, emit)

    def _context(self, label: str, data: Data, start: int) -> list[str]:
        """Up to context_lines lines before the line at `start`."""
        want = self.config.context_lines
        out: list[Data] = []
        end = start - 1  # the newline that ends the previous line
        while len(out) < want and end >= 0:
            begin = data.rfind(b"\n", 0, end) + 1
            out.append(data[begin:end])
            end = begin - 1
        encoding = self.config.encoding
        lines = [
            _text(b, encoding).replace(RECORD_TEXT, "\n")[:MAX_EVENT_LINE] for b in reversed(out)
        ]
        if len(lines) < want:  # the lines before came in an earlier chunk
            lines = self.tails.get(label, [])[len(lines) - want :] + lines
        return lines

    def _remember_tail(self, chunk: Chunk) -> None:
        want = self.config.context_lines
        if not want:
            return
        data = chunk.data
        lines = self._context(chunk.label, data, len(data))
        self.tails[chunk.label] = lines[-want:]

    def _findings(
        self,
        detector: Detector,
        findings: Sequence[Finding],
        now: float,
        emit: Callable[[Event], None],
    ) -> None:
        for f in findings:
            fields = {"detector": f.detector, **f.fields}
            emit(Event(detector.event_type, now, f.message, f.severity, fields))


def _text(raw: Data, encoding: str) -> str:
    """A line as text: undecodable bytes replaced, a CRLF line's CR dropped."""
    return raw.decode(encoding, "replace").removesuffix("\r")


def _json_object(raw: str) -> dict[str, Any]:
    """The line's JSON object; {} for anything else, including a line nested
    too deep for the parser (RecursionError), which is then plain text."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _field_text(value: Any) -> str:
    """A JSON value as the text rules match: strings as they are, numbers
    as written, objects and arrays as compact JSON (capped)."""
    if isinstance(value, str):
        return valid_text(value)  # a "\ud800" escape must not reach the state or the buffer
    if isinstance(value, dict | list):
        try:
            return json.dumps(value, separators=(",", ":"))[:MAX_TEXT]
        except (ValueError, RecursionError):
            return ""
    return text_of(value)


def _rule_matches(rule: Rule, obj: Mapping[str, Any], message: str) -> bool:
    if rule.regex is not None and not rule.regex.search(message):
        return False
    return all(k in obj and p.fullmatch(_field_text(obj[k])) for k, p in rule.match)


def _json_fields(obj: Mapping[str, Any], rule: Rule) -> dict[str, Any]:
    """The matched fields for the event, reduced to what every later stage
    can encode (a 30-digit integer becomes text, deep nesting is cut)."""
    return {k: encodable(obj[k], 1) for k, _ in rule.match if k in obj}
