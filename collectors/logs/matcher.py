"""Many patterns against many log lines in one pass.

Semantics. Patterns are Python `re` syntax over bytes, and a line is what
lies between two newlines, without them: pattern i matches line L iff
``re.compile(patterns[i].encode()).search(L)`` is not None. `scan` takes a
run of complete lines and returns, for each line some pattern matches, its
offsets and the set of pattern ids that match it. Both engines give exactly
these results; the tests hold them to a naive per-line reference.

Design. Calling Python once per line would cap us far below `grep`, so the
whole chunk is scanned at once and Python runs only for the rare lines that
match (about one in a thousand):

1. Candidates. Each pattern is *translated* from Python's own parse of it
   into a small syntax that Hyperscan and `re` read alike: every byte as a
   literal or an explicit class, `^`/`$` as line anchors (multi-line mode),
   `.` and every class minus the newline, `\\A`/`\\Z` as `^`/`$`, a literal
   newline as "never". A translated pattern therefore never crosses a line
   break, and matching it against the chunk finds exactly the lines the
   original matches per line (no hidden line, no invented one). Using Python's
   parser rather than the pattern text avoids the places where PCRE syntax
   differs (`a{,3}`, `[[:alpha:]]`, `\\Z`). Hyperscan compiles all the
   translations into one database and reports every match end; its offset is
   mapped to its line with `bytes.rfind`/`bytes.find`. What Hyperscan rejects
   (backreferences, lookarounds, atomic groups, possessive repeats,
   conditionals, patterns too large) falls back, pattern by pattern, to one
   `re` alternation of their translations searched over the chunk; after a
   hit the search resumes at the next line. The `re` engine uses that path for
   every pattern.
2. Confirmation. Each candidate line is checked with the original compiled
   pattern(s), so `re` stays the single source of truth (e.g. its `\\B`
   quirk on an empty line) and a translation mistake could only cost time.

Hyperscan scratch space is per thread, so one matcher may scan from several
threads at once. Only ASCII case folding applies, as for bytes in `re`.
"""

from __future__ import annotations

import importlib
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

ENGINES = ("hyperscan", "re")

try:
    _hyperscan: Any = importlib.import_module("hyperscan")
except ImportError:  # no wheel for this platform: the `re` engine only
    _hyperscan = None

try:  # the parser `re` itself uses: Python 3.11+, then 3.10
    _sre_parse: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - Python 3.10
    _sre_parse = importlib.import_module("sre_parse")

_HS_FLAGS = (
    0 if _hyperscan is None else _hyperscan.HS_FLAG_MULTILINE | _hyperscan.HS_FLAG_ALLOWEMPTY
)

Hit = tuple[int, int, frozenset[int]]


class Matcher(Protocol):
    """Matches `patterns` against every line of a chunk (see the module doc)."""

    engine: str  # what actually runs: "hyperscan" or "re"
    patterns: tuple[str, ...]

    def scan(self, chunk: bytes) -> list[Hit]: ...


def available_engines() -> tuple[str, ...]:
    return ENGINES if _hyperscan is not None else ("re",)


def build_matcher(patterns: Sequence[str], engine: str = "auto") -> Matcher:
    """A matcher for `patterns`; ValueError names an invalid pattern or engine."""
    if engine not in ("auto", *ENGINES):
        raise ValueError(f"unknown matcher engine {engine!r}: expected auto, hyperscan or re")
    if engine == "hyperscan" and _hyperscan is None:
        raise ValueError(
            "matcher engine 'hyperscan' requested but the hyperscan package is not installed"
            " (no wheel for this platform?): use engine 'auto' or 're'"
        )
    patterns = tuple(patterns)
    regexes = [_compile(p) for p in patterns]
    if engine == "re" or (engine == "auto" and _hyperscan is None):
        return ReMatcher(patterns, regexes)
    return HyperscanMatcher(patterns, regexes)


def _compile(pattern: str) -> re.Pattern[bytes]:
    try:
        return re.compile(pattern.encode())
    except re.error as e:
        raise ValueError(f"invalid regular expression {pattern!r}: {e}") from None


class _Base:
    """Per-pattern regexes, the `re` candidate search and the confirmation."""

    engine = "re"

    def __init__(self, patterns: tuple[str, ...], regexes: list[re.Pattern[bytes]]) -> None:
        self.patterns = patterns
        self._regexes = regexes
        self._translations = [_translate(r.pattern, i) for i, r in enumerate(regexes)]
        self._fallback: re.Pattern[bytes] | None = None
        self._fallback_ids: frozenset[int] = frozenset()
        self.rejected: tuple[int, ...] = ()  # patterns Hyperscan could not take

    def _use_re_for(self, ids: Iterable[int]) -> None:
        ids = sorted(ids)
        if ids:
            alternation = b"|".join(b"(?:" + self._translations[i] + b")" for i in ids)
            self._fallback = re.compile(alternation, re.MULTILINE)
            self._fallback_ids = frozenset(ids)

    def _re_candidates(self, chunk: bytes, into: dict[int, tuple[int, set[int]]]) -> None:
        if self._fallback is None:
            return
        search, find, rfind = self._fallback.search, chunk.find, chunk.rfind
        ids, size, pos = self._fallback_ids, len(chunk), 0
        while pos < size and (m := search(chunk, pos)) is not None:
            at = m.start()
            start = rfind(b"\n", 0, at) + 1
            if start >= size:  # the empty "line" after the final newline
                break
            end = find(b"\n", at)
            if end < 0:
                end = size
            entry = into.get(start)
            if entry is None:
                into[start] = (end, set(ids))
            else:
                entry[1].update(ids)
            pos = end + 1

    def _confirm(self, chunk: bytes, candidates: dict[int, tuple[int, set[int]]]) -> list[Hit]:
        regexes = self._regexes
        out: list[Hit] = []
        for start in sorted(candidates):
            end, ids = candidates[start]
            line = chunk[start:end]
            hit = frozenset(i for i in ids if regexes[i].search(line) is not None)
            if hit:
                out.append((start, end, hit))
        return out


class ReMatcher(_Base):
    """Python `re` only: one alternation of all patterns over the chunk."""

    def __init__(self, patterns: tuple[str, ...], regexes: list[re.Pattern[bytes]]) -> None:
        super().__init__(patterns, regexes)
        self.engine = "re"
        self._use_re_for(range(len(patterns)))

    def scan(self, chunk: bytes) -> list[Hit]:
        candidates: dict[int, tuple[int, set[int]]] = {}
        self._re_candidates(chunk, candidates)
        return self._confirm(chunk, candidates)


class HyperscanMatcher(_Base):
    """One Hyperscan block-mode database; `re` for the patterns it rejects."""

    def __init__(self, patterns: tuple[str, ...], regexes: list[re.Pattern[bytes]]) -> None:
        super().__init__(patterns, regexes)
        self.engine = "hyperscan"
        self._db: Any = None
        self._local = threading.local()
        ids = list(range(len(patterns)))
        if not ids:
            return
        try:
            db = self._compile(ids)
        except _hyperscan.error:  # find which: one by one
            rejected = {i for i in ids if not self._compiles(i)}
            self._use_re_for(rejected)
            ids = [i for i in ids if i not in rejected]
            db = self._compile(ids) if ids else None
        self._db = db
        self.rejected = tuple(sorted(self._fallback_ids))

    def _compile(self, ids: list[int]) -> Any:
        db = _hyperscan.Database(mode=_hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=[self._translations[i] for i in ids], ids=ids, flags=_HS_FLAGS)
        return db

    def _compiles(self, i: int) -> bool:
        try:
            self._compile([i])
        except _hyperscan.error:
            return False
        return True

    def scan(self, chunk: bytes) -> list[Hit]:
        candidates: dict[int, tuple[int, set[int]]] = {}
        if self._db is not None and chunk:
            scratch = getattr(self._local, "scratch", None)
            if scratch is None:
                scratch = self._local.scratch = _hyperscan.Scratch(self._db)
            size = len(chunk)
            on_match = _on_match(chunk, candidates, size)
            self._db.scan(chunk, match_event_handler=on_match, scratch=scratch)
            # Hyperscan (5.4.12 here) can miss a `$` match on the last line, whose
            # newline ends the buffer (`[0-9]$` in b"\n00000000\xc3\xa9\n0000\n"):
            # scan that line again, followed by a spare newline, where it never misses.
            last = chunk.rfind(b"\n", 0, size - 1) + 1
            tail = chunk[last:] + b"\n"
            on_match = _on_match(tail, candidates, size - last, last)
            self._db.scan(tail, match_event_handler=on_match, scratch=scratch)
        self._re_candidates(chunk, candidates)
        return self._confirm(chunk, candidates)


def _on_match(
    data: bytes, into: dict[int, tuple[int, set[int]]], size: int, shift: int = 0
) -> Callable[[int, int, int, int, object], None]:
    """A Hyperscan callback that files each match end under its line: lines
    of `data[:size]`, filed at their offset plus `shift`."""
    find, rfind = data.find, data.rfind
    line_start, line_end, line_ids = 0, -1, set()

    def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        nonlocal line_start, line_end, line_ids
        if line_start <= to <= line_end:  # another match in the same line: the usual case
            line_ids.add(pid)
            return
        start = rfind(b"\n", 0, to) + 1
        if start >= size:  # `$` after the final newline, on no line
            return
        end = find(b"\n", to, size)
        if end < 0:
            end = size
        line_start, line_end = start, end
        entry = into.get(start + shift)
        if entry is None:
            entry = into[start + shift] = (end + shift, set())
        line_ids = entry[1]
        line_ids.add(pid)

    return on_match


# -- translation ---------------------------------------------------------------------------

_ALL = frozenset(range(256))
_NL = 0x0A
_DIGIT = frozenset(b"0123456789")
_SPACE = frozenset(b" \t\n\r\f\v")
_WORD = _DIGIT | frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_CATEGORY = {
    "CATEGORY_DIGIT": _DIGIT,
    "CATEGORY_NOT_DIGIT": _ALL - _DIGIT,
    "CATEGORY_SPACE": _SPACE,
    "CATEGORY_NOT_SPACE": _ALL - _SPACE,
    "CATEGORY_WORD": _WORD,
    "CATEGORY_NOT_WORD": _ALL - _WORD,
}
_AT = {
    "AT_BEGINNING": "^",
    "AT_BEGINNING_LINE": "^",
    "AT_BEGINNING_STRING": "^",
    "AT_END": "$",
    "AT_END_LINE": "$",
    "AT_END_STRING": "$",
    "AT_BOUNDARY": r"\b",
    "AT_NON_BOUNDARY": r"\B",
}
_NEVER = r"[^\x00-\xff]"  # one byte wide, matches nothing (Hyperscan rejects it: `re` path)
_IGNORECASE, _LOCALE = re.IGNORECASE.value, re.LOCALE.value


class _Untranslatable(Exception):
    pass


def _translate(pattern: bytes, index: int) -> bytes:
    """`pattern` rewritten to match, over a whole chunk in multi-line mode,
    exactly the lines it matches one by one; `^` (every line a candidate) for
    what cannot be rewritten, so the result is never narrower than the original."""
    try:
        with warnings.catch_warnings():  # re.compile already warned
            warnings.simplefilter("ignore")
            parsed = _sre_parse.parse(pattern, 0)
        translator = _Translator(index, set())
        text = translator.sequence(parsed)
        if translator.referenced:  # capture just the groups referred to
            translator = _Translator(index, translator.referenced)
            text = translator.sequence(parsed)
        flags = parsed.state.flags
        if flags & _LOCALE:
            raise _Untranslatable("(?L)")
        if flags & _IGNORECASE:
            text = f"(?i:{text})"
        return text.encode("ascii")
    except (_Untranslatable, re.error, AttributeError, TypeError, ValueError):
        return b"^"


class _Translator:
    def __init__(self, index: int, capture: set[int]) -> None:
        self.index = index
        self.capture = capture
        self.referenced: set[int] = set()

    def group_name(self, group: int) -> str:
        self.referenced.add(group)
        return f"p{self.index}g{group}"

    def sequence(self, sub: Any) -> str:
        return "".join(self.item(_name(op), av) for op, av in sub.data)

    def item(self, op: str, av: Any) -> str:
        if op == "LITERAL":
            return _NEVER if av == _NL else _byte(av)
        if op == "NOT_LITERAL":
            return _class({av}, negate=True)
        if op == "ANY":
            return _class(set(), negate=True)
        if op == "IN":
            members: set[int] = set()
            negate = False
            for kind, value in av:
                kind = _name(kind)
                if kind == "NEGATE":
                    negate = True
                elif kind == "LITERAL":
                    members.add(value)
                elif kind == "RANGE":
                    members.update(range(value[0], value[1] + 1))
                elif kind == "CATEGORY" and _name(value) in _CATEGORY:
                    members |= _CATEGORY[_name(value)]
                else:
                    raise _Untranslatable(kind)
            return _class(members, negate)
        if op == "AT" and _name(av) in _AT:
            return _AT[_name(av)]
        if op == "BRANCH":
            return "(?:" + "|".join(self.sequence(s) for s in av[1]) + ")"
        if op == "SUBPATTERN":
            group, add_flags, del_flags, sub = av
            if (add_flags | del_flags) & _LOCALE:
                raise _Untranslatable("(?L)")
            body = self.sequence(sub)
            if group is not None and group in self.capture:
                body = f"(?P<{self.group_name(group)}>{body})"
            if add_flags & _IGNORECASE:
                return f"(?i:{body})"
            if del_flags & _IGNORECASE:
                return f"(?-i:{body})"
            return f"(?:{body})"
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            suffix = {"MAX_REPEAT": "", "MIN_REPEAT": "?", "POSSESSIVE_REPEAT": "+"}[op]
            high_text = "" if high == _sre_parse.MAXREPEAT else str(high)
            return f"(?:{self.sequence(sub)}){{{low},{high_text}}}{suffix}"
        if op == "GROUPREF":
            return f"(?P={self.group_name(av)})"
        if op == "GROUPREF_EXISTS":
            group, yes, no = av
            no_text = "" if no is None else "|" + self.sequence(no)
            return f"(?({self.group_name(group)}){self.sequence(yes)}{no_text})"
        if op in ("ASSERT", "ASSERT_NOT"):
            direction, sub = av
            kind = (
                ("=" if op == "ASSERT" else "!")
                if direction == 1
                else ("<=" if op == "ASSERT" else "<!")
            )
            return f"(?{kind}{self.sequence(sub)})"
        if op == "ATOMIC_GROUP":
            return f"(?>{self.sequence(av)})"
        raise _Untranslatable(op)


def _name(constant: Any) -> str:
    return str(getattr(constant, "name", constant))


def _byte(b: int) -> str:
    return chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}"


def _class(members: set[int] | frozenset[int], negate: bool) -> str:
    """A class of bytes that never contains the newline."""
    members = set(members)
    if negate:
        members.add(_NL)
        if len(members) == 256:
            return _NEVER
    else:
        members.discard(_NL)
        if not members:
            return _NEVER
        if len(members) == 1:
            return _byte(members.pop())
    ranges: list[str] = []
    ordered = sorted(members)
    low = prev = ordered[0]
    for b in [*ordered[1:], -1]:
        if b != prev + 1:
            ranges.append(_byte(low) if low == prev else f"{_byte(low)}-{_byte(prev)}")
            low = b
        prev = b
    return ("[^" if negate else "[") + "".join(ranges) + "]"
