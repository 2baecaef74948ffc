r"""Which lines of a JSON log can matter, found in their raw bytes before
any of them is parsed.

A JSON line produces something (a match, a failed login, a new error
signature) only if one of these holds for its parsed object:

- a rule matches: its `match` keys are all present (and their values match),
  and its `pattern` is found in the message;
- the failed-login prefilter is found in the message (auth detector);
- the level field is an error level (new_errors detector).

Each of these needs some text in the raw line: a rule with `match` needs
its keys, as JSON writes them (`match = {code = ".+"}` needs `"code"`); a
rule with only a `pattern` needs one of the pattern's required literals
(matcher.py derives them: `ERROR|FATAL` needs ERROR or FATAL); the auth
detector needs `Failed ` or `authentication failure`; an error level needs
one of its words, in any case. One multi-literal scan of the whole chunk
(matcher.py, Hyperscan when installed) finds the lines holding any of them;
only those are parsed.

This holds only while the parsed text is a piece of the raw line, so a line
is also parsed, whatever the literals say, when

- it holds a `\u` escape, which can spell any text (`\u0045RROR` is
  ERROR; `"\u0063ode"` is the key "code"). The short escapes (`\"`, `\\`,
  `\/`, `\b`, `\f`, `\n`, `\r`, `\t`) stand only for their own character,
  so a literal holding one of those is cut to its longest piece without
  (`I/O error`, perhaps written `I\/O error`, to `O error`), and a line with
  such an escape is parsed only if a key or a piece shorter than 3 bytes
  still holds its character;
- its message key (or `msg`) has a value other than a string: a number, an
  object or an array is matched as re-encoded text ("1E2" becomes "100.0",
  objects lose their spaces), which need not be in the raw line;
- a literal is caseless and the line holds one of the four characters that
  Python's case folding maps onto an ASCII letter (U+0130, U+0131, U+017F,
  U+212A: `(?i)kill` matches "\u212aill", with the Kelvin sign);
- a literal is not ASCII and the line holds any non-ASCII byte (`str` and
  `bytes` patterns read a non-ASCII class differently).

And the prefilter is off (every line is parsed) when a rule's pattern has
no required literal of 3 bytes or more, or the encoding is not UTF-8 or
ASCII (the literals are UTF-8 bytes). The tests hold the result to a full
parse of every line, on generated and hostile JSON.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Sequence

from collectors.logs.matcher import Data, Matcher, _parse, _required_literals, build_matcher

# Non-ASCII characters that `re.IGNORECASE` on `str` matches to an ASCII
# letter (U+0130, U+0131, U+017F, U+212A), as UTF-8: a line holding one may
# match a caseless literal
# that its bytes do not hold.
_FOLDS_TO_ASCII = tuple(c.encode() for c in "\u0130\u0131\u017f\u212a")
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_ESCAPABLE = re.compile(rb'["\\/\x08\x0c\n\r\t]')
_UNICODE_ESCAPES = tuple((b"\\u" + bytes([c]), False) for c in b"0123456789abcdefABCDEF")
# JSON's short escapes, by the byte each stands for
_SHORT_ESCAPES = tuple(
    (bytes([c]), bytes([0x5C, e])) for c, e in zip(b'"\\/\b\f\n\r\t', b'"\\/bfnrt')
)
_ENCODINGS = frozenset({"utf-8", "ascii"})

Literal = tuple[bytes, bool]  # literal, caseless


class JsonPrefilter:
    """The lines of a chunk worth parsing (see the module doc)."""

    def __init__(
        self,
        literals: Sequence[Literal] | None,
        keys: Sequence[str],
        message_keys: Sequence[str],
        encoding: str,
        engine: str = "auto",
    ) -> None:
        """`literals`: from patterns, and `keys`: JSON keys; a line must hold
        one of them (literals None: parse every line). `message_keys`: keys
        whose value is matched as text, if any pattern or detector reads it."""
        self.enabled = literals is not None and codecs.lookup(encoding).name in _ENCODINGS
        self.matcher: Matcher | None = None
        self.folds = False
        self.non_ascii = False
        self.escapes: list[bytes] = []
        self.non_string: re.Pattern[bytes] | None = None
        if not self.enabled or literals is None:
            return
        # A literal holding a character a short escape stands for (`I/O error`
        # may be written `I\/O error`) is cut to its longest piece without one.
        literals = [_unescapable(lit, ci) for lit, ci in literals]
        self.folds = any(ci for _, ci in literals)
        self.non_ascii = any(not lit.isascii() for lit, _ in literals)
        # `\u` escapes, which can spell anything, are looked for with the
        # literals, as `\u` and a hex digit (3 bytes: Hyperscan takes them).
        every = [*literals, *(key_literal(k) for k in keys), *_UNICODE_ESCAPES]
        self.matcher = build_matcher([_regex(lit, ci) for lit, ci in every], engine)
        # The short escapes matter only if a literal or key still holds their character.
        texts = b"".join([lit for lit, _ in literals] + [k.encode() for k in keys])
        self.escapes = [e for c, e in _SHORT_ESCAPES if c in texts]
        if message_keys:
            names = b"|".join(re.escape(_json_key(k)) for k in dict.fromkeys(message_keys))
            self.non_string = re.compile(rb"(?:" + names + rb")[ \t\r]*:[ \t\r]*[^\"\s]")

    def lines(self, data: Data) -> Iterable[tuple[int, int]]:
        """(start, end) of each line of `data` (complete lines) to parse, in order."""
        if not self.enabled:
            return all_lines(data)
        starts: set[int] = set()
        if self.matcher is not None:
            starts.update(start for start, _, _ in self.matcher.scan(data))
        for escape in self.escapes:
            _lines_with(data, escape, starts)
        if self.folds and not data.isascii():
            for char in _FOLDS_TO_ASCII:
                _lines_with(data, char, starts)
        if self.non_ascii and not data.isascii():
            _lines_matching(data, _NON_ASCII, starts)
        if self.non_string is not None:
            _lines_matching(data, self.non_string, starts)
        find = data.find
        return [(s, find(b"\n", s)) for s in sorted(starts)]


def literals_of(pattern: str) -> list[Literal] | None:
    """The literals one of which a line matching `pattern` holds; None if none."""
    found = _required_literals(_parse(pattern.encode()))
    if found is None:
        return None
    literals, caseless = found
    return [(lit, caseless) for lit in sorted(literals)]


def key_literal(key: str) -> Literal:
    """A JSON key as a line holds it unless it is escaped."""
    return _json_key(key), False


def _unescapable(literal: bytes, caseless: bool) -> Literal:
    """The literal, or its longest piece (3 bytes or more) that holds no
    character a short escape stands for: a piece of it every match holds."""
    pieces = _ESCAPABLE.split(literal)
    if len(pieces) == 1:
        return literal, caseless
    piece = max(pieces, key=len)
    return (piece, caseless) if len(piece) >= 3 else (literal, caseless)


def _json_key(key: str) -> bytes:
    return json.dumps(key, ensure_ascii=False).encode()


def _regex(literal: bytes, caseless: bool) -> str:
    text = "".join(re.escape(chr(b)) if b < 0x80 else f"\\x{b:02x}" for b in literal)
    return f"(?i:{text})" if caseless else text


def all_lines(data: Data) -> list[tuple[int, int]]:
    out, start, find = [], 0, data.find
    while start < len(data):
        end = find(b"\n", start)
        out.append((start, end))
        start = end + 1
    return out


def _lines_with(data: Data, needle: bytes, into: set[int]) -> None:
    """The lines holding `needle`; its first byte is looked for (memchr), the rest checked."""
    find, rfind, first, pos = data.find, data.rfind, needle[:1], 0
    while (at := find(first, pos)) >= 0:
        if not data.startswith(needle, at):
            pos = at + 1
            continue
        into.add(rfind(b"\n", 0, at) + 1)
        pos = find(b"\n", at) + 1
        if pos == 0:
            return


def _lines_matching(data: Data, pattern: re.Pattern[bytes], into: set[int]) -> None:
    search, find, rfind, pos = pattern.search, data.find, data.rfind, 0
    while (m := search(data, pos)) is not None:
        at = m.start()
        into.add(rfind(b"\n", 0, at) + 1)
        pos = find(b"\n", at) + 1
        if pos == 0:
            return
