r"""Many patterns against many log lines in one pass.

Semantics. Patterns are Python `re` syntax over bytes, and a line is what
lies between two newlines, without them: pattern i matches line L iff
``re.compile(patterns[i].encode()).search(L)`` is not None. `scan` takes a
run of complete lines and returns, for each line some pattern matches, its
offsets and the set of pattern ids that match it. Both engines give exactly
these results; the tests hold them to a naive per-line reference.

Design. Calling Python once per line would cap us far below `grep`, so the
whole chunk is scanned at once and Python runs only for the rare lines that
match (about one in a thousand), in two steps, as grep and ripgrep do:

1. Candidates, from the whole chunk at once.
   - Hyperscan looks for literals only. From Python's own parse of each
     pattern we derive a set of literals (3 bytes or more) one of which every
     match must contain: `ERROR|FATAL` gives ERROR, FATAL; `status=5\d\d`
     gives status=5; `(?i)` makes them caseless. One block-mode database holds
     them all; each match end is mapped to its line with `bytes.rfind` and
     `bytes.find`. Why not the patterns themselves: the Hyperscan we ship
     (python-hyperscan 0.9.1, Vectorscan 5.4.12) misses matches of some
     multi-pattern databases on x86 (`[0-9]$` next to `0$`, `\w+:\s*\d` next
     to `: `; VectorCamp/vectorscan#317, #375), while literal databases
     held up in fuzzing. Literals are also what it is fastest at.
   - `re` takes the patterns without such literals (`\d$`, `^\[`), and all of
     them for the `re` engine: one alternation of their *translations*,
     searched over the chunk, resuming at the next line after each hit. A
     translation, generated from the parse, never crosses a line break: `.`
     and every class lose the newline, `^`/`$`/`\A`/`\Z` become line anchors
     (multi-line mode), a literal newline "never". So over the chunk it finds
     exactly the lines the pattern matches one by one, and none is hidden by
     a match that spans two. (A construct the translator does not know, e.g.
     `(?L)`, makes every line a candidate: correct, slow, not seen so far.)
2. Confirmation: each candidate line is searched by the original compiled
   pattern(s), so `re` itself stays the definition (e.g. its `\B` on an empty
   line), and a prefilter may only cost time, never change a result.

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

Data = bytes | bytearray  # lines as read: files hand out bytearrays (files.py)
Hit = tuple[int, int, frozenset[int]]
Candidates = dict[int, tuple[int, set[int]]]  # line start -> (line end, pattern ids)


class Matcher(Protocol):
    """Matches `patterns` against every line of a chunk (see the module doc)."""

    engine: str  # what actually runs: "hyperscan" or "re"
    patterns: tuple[str, ...]

    def scan(self, chunk: Data) -> list[Hit]: ...


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


def _parse(pattern: bytes) -> Any:
    with warnings.catch_warnings():  # re.compile has warned already
        warnings.simplefilter("ignore")
        return _sre_parse.parse(pattern, 0)


class _Base:
    """Per-pattern regexes, the `re` candidate search and the confirmation."""

    def __init__(self, patterns: tuple[str, ...], regexes: list[re.Pattern[bytes]]) -> None:
        self.patterns = patterns
        self._regexes = regexes
        self._parsed = [_parse(r.pattern) for r in regexes]
        self._alternation: re.Pattern[bytes] | None = None
        self.re_scanned: tuple[int, ...] = ()  # the patterns the `re` search covers

    def _search_with_re(self, ids: Iterable[int]) -> None:
        self.re_scanned = tuple(sorted(ids))
        if self.re_scanned:
            # a translation may itself be an alternation: alternatives of alternatives
            translations = [_translate(self._parsed[i], i) for i in self.re_scanned]
            self._alternation = re.compile(b"|".join(translations), re.MULTILINE)

    def _re_candidates(self, chunk: Data, into: Candidates) -> None:
        if self._alternation is None:
            return
        search, find, rfind = self._alternation.search, chunk.find, chunk.rfind
        ids, size, pos = self.re_scanned, len(chunk), 0
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

    def _confirm(self, chunk: Data, candidates: Candidates) -> list[Hit]:
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
    """Python `re` only: one alternation of all the patterns over the chunk."""

    def __init__(self, patterns: tuple[str, ...], regexes: list[re.Pattern[bytes]]) -> None:
        super().__init__(patterns, regexes)
        self.engine = "re"
        self._search_with_re(range(len(patterns)))

    def scan(self, chunk: Data) -> list[Hit]:
        candidates: Candidates = {}
        self._re_candidates(chunk, candidates)
        return self._confirm(chunk, candidates)


class HyperscanMatcher(_Base):
    """Hyperscan finds the lines holding a required literal; `re` the rest."""

    def __init__(self, patterns: tuple[str, ...], regexes: list[re.Pattern[bytes]]) -> None:
        super().__init__(patterns, regexes)
        self.engine = "hyperscan"
        self._db: Any = None
        self._local = threading.local()
        owners: dict[tuple[bytes, bool], set[int]] = {}  # literal, caseless -> pattern ids
        without: list[int] = []
        for i, parsed in enumerate(self._parsed):
            found = _required_literals(parsed)
            if found is None:
                without.append(i)
                continue
            literals, caseless = found
            for literal in literals:
                key = (literal.lower() if caseless else literal, caseless)
                owners.setdefault(key, set()).add(i)
        self._owners = [frozenset(ids) for ids in owners.values()]
        if owners:
            try:
                self._db = _hyperscan.Database(mode=_hyperscan.HS_MODE_BLOCK)
                self._db.compile(
                    expressions=[b"".join(b"\\x%02x" % b for b in lit) for lit, _ in owners],
                    ids=list(range(len(owners))),
                    flags=[_hyperscan.HS_FLAG_CASELESS if ci else 0 for _, ci in owners],
                )
            except _hyperscan.error:  # not seen: literals always compile
                self._db, without = None, list(range(len(patterns)))
        self._search_with_re(without)

    def scan(self, chunk: Data) -> list[Hit]:
        candidates: Candidates = {}
        if self._db is not None and chunk:
            scratch = getattr(self._local, "scratch", None)
            if scratch is None:
                scratch = self._local.scratch = _hyperscan.Scratch(self._db)
            on_match = _on_literal(chunk, candidates, self._owners)
            self._db.scan(chunk, match_event_handler=on_match, scratch=scratch)
        self._re_candidates(chunk, candidates)
        return self._confirm(chunk, candidates)


def _on_literal(
    chunk: Data, into: Candidates, owners: list[frozenset[int]]
) -> Callable[[int, int, int, int, object], None]:
    """A Hyperscan callback that files each literal under its line, for the
    patterns that require it. A literal never holds a newline, so its last
    byte, at `to - 1`, is inside its line."""
    find, rfind, size = chunk.find, chunk.rfind, len(chunk)
    line_start, line_end = 0, -1
    line_ids: set[int] = set()

    def on_match(literal: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        nonlocal line_start, line_end, line_ids
        if line_start < to <= line_end:  # another literal in the same line
            line_ids |= owners[literal]
            return
        line_start = rfind(b"\n", 0, to) + 1
        line_end = find(b"\n", to)
        if line_end < 0:
            line_end = size
        entry = into.get(line_start)
        if entry is None:
            entry = into[line_start] = (line_end, set())
        line_ids = entry[1]
        line_ids |= owners[literal]

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
_NEVER = r"[^\x00-\xff]"  # one byte wide (for look-behinds), matches nothing
_IGNORECASE, _LOCALE = re.IGNORECASE.value, re.LOCALE.value


class _Untranslatable(Exception):
    pass


def _translate(parsed: Any, index: int) -> bytes:
    """The parsed pattern rewritten to match, over a whole chunk in multi-line
    mode, exactly the lines it matches one by one; `^` (every line a candidate)
    for what cannot be rewritten, so never narrower than the original."""
    try:
        translator = _Translator(index, set())
        translator.top(parsed)
        if translator.referenced:  # capture just the groups referred to
            translator = _Translator(index, translator.referenced)
        text = translator.top(parsed)
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

    def top(self, sub: Any) -> str:
        """Alternatives bare, as `re` finds a first-byte set only for those."""
        if len(sub.data) == 1 and _name(sub.data[0][0]) == "BRANCH":
            return "|".join(self.sequence(s) for s in sub.data[0][1][1])
        return self.sequence(sub)

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
            return body  # a sequence never has a bare `|`: no group needed
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            body = self.sequence(sub)
            single = len(sub.data) == 1 and _name(sub.data[0][0]) in _ONE_BYTE
            return (body if single else f"(?:{body})") + _repeat(low, high) + _LAZINESS[op]
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


_ONE_BYTE = ("LITERAL", "NOT_LITERAL", "ANY", "IN")  # translated to a single atom
_LAZINESS = {"MAX_REPEAT": "", "MIN_REPEAT": "?", "POSSESSIVE_REPEAT": "+"}


def _repeat(low: int, high: int) -> str:
    if high == _sre_parse.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if low == high:
        return f"{{{low}}}"
    return "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"


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


# -- required literals ------------------------------------------------------------------

_MAX_SET = 64  # strings an exact set may hold
_MAX_LEN = 64  # bytes a literal may hold
_MIN_LEN = 3  # shorter literals are in too many lines to be worth a prefilter
_EMPTY = frozenset([b""])
Strings = frozenset[bytes]


def _required_literals(parsed: Any) -> tuple[Strings, bool] | None:
    """Literals one of which every match of the pattern contains, and whether
    they are to be found caseless; None if there are no good ones."""
    try:
        finder = _Literals()
        if parsed.state.flags & _LOCALE:
            return None
        finder.caseless = bool(parsed.state.flags & _IGNORECASE)
        _, required = finder.sequence(parsed)
    except (AttributeError, TypeError, ValueError):  # a parse tree we do not know
        return None
    if finder.unsure or required is None or min(map(len, required)) < _MIN_LEN:
        return None
    return required, finder.caseless


class _Literals:
    """For a node: the exact set of strings it matches (if small), and a set
    of literals one of which is in every string it matches (if any)."""

    def __init__(self) -> None:
        self.caseless = False
        self.unsure = False

    def sequence(self, sub: Any) -> tuple[Strings | None, Strings | None]:
        run: Strings = _EMPTY  # the exact strings of the items since the last inexact one
        exact = True
        best: Strings | None = None
        for op, av in sub.data:
            item_exact, item_required = self.item(_name(op), av)
            joined = None if item_exact is None else _concat(run, item_exact)
            if joined is not None:
                run = joined
                continue
            exact = False
            best = _better(best, run)
            if item_exact is None:
                best = _better(best, item_required)
                run = _EMPTY
            else:  # too many or too long: a fresh run
                run = item_exact
        best = _better(best, run)
        return (run if exact else None), best

    def item(self, op: str, av: Any) -> tuple[Strings | None, Strings | None]:
        if op == "LITERAL":
            return (None, None) if av == _NL else (frozenset([bytes([av])]), None)
        if op == "IN":
            members: set[int] = set()
            for kind, value in av:
                kind = _name(kind)
                if kind == "LITERAL":
                    members.add(value)
                elif kind == "RANGE" and value[1] - value[0] < 4:
                    members.update(range(value[0], value[1] + 1))
                else:  # NEGATE, a category, a wide range: too many strings
                    return None, None
            members.discard(_NL)
            return (
                (frozenset(bytes([b]) for b in members), None)
                if len(members) <= 4
                else (None, None)
            )
        if op in ("AT", "ASSERT", "ASSERT_NOT"):  # nothing consumed: the empty string
            return _EMPTY, None
        if op == "BRANCH":
            alternatives = [self.sequence(s) for s in av[1]]
            exact = _union([e for e, _ in alternatives])
            if exact is not None and len(exact) > _MAX_SET:
                exact = None
            return exact, _union([r for _, r in alternatives])
        if op == "SUBPATTERN":
            _, add_flags, del_flags, sub = av
            if (add_flags | del_flags) & _LOCALE:
                self.unsure = True
            if add_flags & _IGNORECASE:
                self.caseless = True
            return self.sequence(sub)
        if op == "ATOMIC_GROUP":
            return self.sequence(av)
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            sub_exact, sub_required = self.sequence(sub)
            return _repeated(sub_exact, low, high), (sub_required if low >= 1 else None)
        return None, None  # a back reference, a conditional: no constraint from it


def _repeated(exact: Strings | None, low: int, high: int) -> Strings | None:
    """The exact strings of a repeat of `exact`, `low` to `high` times, if few."""
    if exact is None or high > 4:
        return None
    power: Strings | None = _EMPTY
    out: Strings = _EMPTY if low == 0 else frozenset()
    for k in range(1, high + 1):
        power = _concat(power, exact) if power is not None else None
        if power is None:
            return None
        if k >= low:
            out |= power
    return out if len(out) <= _MAX_SET else None


def _union(sets: list[Strings | None]) -> Strings | None:
    """All of them, if every one is known."""
    out: Strings = frozenset()
    for one in sets:
        if one is None:
            return None
        out |= one
    return out


def _concat(left: Strings, right: Strings) -> Strings | None:
    if len(left) * len(right) > _MAX_SET:
        return None
    joined = frozenset(a + b for a in left for b in right)
    return joined if all(len(s) <= _MAX_LEN for s in joined) else None


def _better(a: Strings | None, b: Strings | None) -> Strings | None:
    """The more selective of two sets of required literals: the longer shortest one."""
    if b is None or not b or b"" in b:
        return a
    if a is None:
        return b
    return max(a, b, key=lambda s: (min(map(len, s)), -len(s)))
