r"""The alert rule expression language: parse a rule's `expr` and evaluate it.

Close to a Prometheus alerting expression, restricted to one selector, at most
one function and one comparison with a number::

    expr      := call [cmp number] | selector cmp number
    call      := FUNC "(" selector range ")"        FUNC: avg_over_time max_over_time
                                                     min_over_time rate increase
               | "absent" "(" selector [range] ")"  no comparison means "== 1"
               | "predict_linear" "(" selector range "," number ")"
    range     := "[" duration "]"
    selector  := metric ["{" [matcher {"," matcher} [","]] "}"]
    matcher   := label ("=" | "!=" | "=~" | "!~") string
    cmp       := ">" | ">=" | "<" | "<=" | "==" | "!="

Whitespace may stand between any two tokens. `metric` is
`[a-zA-Z_:][a-zA-Z0-9_:]*` and `label` is `[a-zA-Z_][a-zA-Z0-9_]*`; an
identifier followed by "(" is a function call. A string is in double or
single quotes, with the escapes \\ \" \' \n \t \r; any other escape is an
error, as in Prometheus (write `"\\d"` for the regex `\d`). A number is an
int or a float with optional sign and exponent; NaN and Inf are refused.
A duration is one or more `<number><unit>` without spaces, units
ms s m h d w: every Prometheus duration ("30s", "5m", "1h30m") reads the same,
and fractions ("1.5m") are also accepted, like the config's durations.

Semantics, for one series at evaluation time `now` (`evaluate`):

- A label a series lacks has the value "" (`{x=""}` matches series without
  x, `{x!=""}` requires it). Regex matchers use Python `re` syntax and are
  anchored at both ends: `=~"sd.*"` must match the whole value.
- Plain selector: the latest sample at or before `now`, if newer than
  `now - STALE`; otherwise no value.
- Range functions see the samples with `now - window < ts <= now` (a sample
  exactly `window` old is out). avg/max/min_over_time need one sample.
- increase: counter semantics; a decrease means the counter restarted from 0,
  so that step counts the new value. The sum of the steps between the
  samples in the window, NOT extrapolated to the window's edges as
  Prometheus does: with a 15 s scrape, `increase(x[5m])` covers the ~4m45s
  between the first and last sample. rate = increase / (last_ts - first_ts).
  Both need two samples.
- predict_linear(s[w], t): the least-squares line through the window's
  samples, read `t` seconds after `now` (as Prometheus); needs two samples at
  different times.
- absent(s) is decided by the engine across all series (1 when no series
  matching s has a value: within STALE, or within the range if given);
  `evaluate` returns None for it.

Parsing is pure and errors are `ExprError`, naming what was expected at a
1-based column (`pretty()` draws a caret under it).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import operator
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

STALE = 300.0
"""Seconds a plain selector's latest sample stays current (Prometheus' 5m lookback)."""

RANGE_FUNCTIONS = ("avg_over_time", "max_over_time", "min_over_time", "rate", "increase")
FUNCTIONS = (*RANGE_FUNCTIONS, "absent", "predict_linear")
COMPARISONS = (">=", "<=", "==", "!=", ">", "<")  # longest first, for scanning
MATCH_OPS = ("=~", "!~", "!=", "=")

_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NOT_FINITE = re.compile(r"[+-]?(?:inf(?:inity)?|nan)\b", re.IGNORECASE)
_DURATION = re.compile(r"[0-9a-zA-Z.]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r"}
_WORD = re.compile(r"[a-zA-Z0-9_:.]+")


class ExprError(ValueError):
    """A bad expression: what was expected, at a 1-based column of `text`."""

    def __init__(self, message: str, column: int, text: str, reached: int = 0) -> None:
        super().__init__(f"col {column}: {message}")
        self.message = message
        self.column = column
        self.text = text
        self.reached = max(reached, column - 1)  # how far the parser read before failing

    def pretty(self) -> str:
        """The message, the expression, and a caret under the column."""
        shown = self.text.replace("\r", " ").replace("\n", " ")
        pad = "".join("\t" if c == "\t" else " " for c in shown[: self.column - 1])
        return f"col {self.column}: {self.message}\n  {shown}\n  {pad}^"


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: str  # one of MATCH_OPS
    value: str
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in MATCH_OPS:
            raise ValueError(f"unknown matcher operator {self.op!r}")
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", re.compile(self.value))

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self._regex is not None:
            return (self._regex.fullmatch(actual) is not None) == (self.op == "=~")
        return (actual == self.value) == (self.op == "=")


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[LabelMatcher, ...] = ()

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return name == self.metric and all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Expr:
    text: str
    func: str | None  # None for a plain selector
    selector: Selector
    window: float | None  # seconds, the [..] range
    arg: float | None  # predict_linear's horizon in seconds
    op: str  # "" for a compound rule that fires on every series in its result
    threshold: float

    def lookback(self) -> float:
        """Seconds of history evaluation needs."""
        return self.window if self.window is not None else STALE

    def leaves(self) -> tuple[Expr, ...]:
        """The selectors (inside their functions) the expression reads."""
        return (self,)


def _quote(s: str) -> str:
    return f"'{s}'" if '"' in s else f'"{s}"'


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        raise ExprError(message, (self.pos if pos is None else pos) + 1, self.text, self.pos)

    def found(self) -> str:
        if self.pos >= len(self.text):
            return "end of input"
        m = _WORD.match(self.text, self.pos)
        return _quote(m.group() if m else self.text[self.pos])

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.ws()
        return self.pos >= len(self.text)

    def peek(self, token: str) -> bool:
        self.ws()
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, why: str) -> None:
        if not self.take(token):
            self.fail(f"expected {_quote(token)} {why}, found {self.found()}")

    def match(self, pattern: re.Pattern[str]) -> str | None:
        self.ws()
        m = pattern.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def one_of(self, tokens: Sequence[str]) -> str | None:
        for token in tokens:
            if self.take(token):
                return token
        return None

    def number(self, what: str) -> float:
        self.ws()
        start = self.pos
        bad = _NOT_FINITE.match(self.text, start)
        if bad:
            self.fail(f"expected {what}, found {_quote(bad.group())}: NaN and Inf are not allowed")
        text = self.match(_NUMBER)
        if text is None:
            self.fail(f"expected {what}, found {self.found()}")
        value = float(text)
        if not math.isfinite(value):
            self.fail(f"number {text} is out of range", start)
        return value

    def comparison(self) -> str:
        op = self.one_of(COMPARISONS)
        if op is None:
            hint = "; use == to test equality" if self.peek("=") else ""
            self.fail(f"expected a comparison (>, >=, <, <=, ==, !=), found {self.found()}{hint}")
        return op

    def string(self) -> tuple[int, str]:
        self.ws()
        start = self.pos
        quote = self.text[start : start + 1]
        if quote not in ('"', "'"):
            self.fail(f"expected a quoted string, found {self.found()}")
        out: list[str] = []
        i = start + 1
        while True:
            if i >= len(self.text):
                self.fail(f"unterminated string: expected a closing {quote}", start)
            c = self.text[i]
            if c == quote:
                break
            if c == "\\":
                escaped = self.text[i + 1 : i + 2]
                if escaped not in _ESCAPES:
                    if not escaped:
                        self.fail(f"unterminated string: expected a closing {quote}", start)
                    self.fail(
                        f'unknown escape "\\{escaped}" in a string; write "\\\\" for a backslash',
                        i,
                    )
                out.append(_ESCAPES[escaped])
                i += 2
                continue
            out.append(c)
            i += 1
        self.pos = i + 1
        return start, "".join(out)

    def selector(self, metric: str) -> Selector:
        matchers: list[LabelMatcher] = []
        if not self.take("{"):
            return Selector(metric)
        while not self.take("}"):
            label = self.match(_LABEL)
            if label is None:
                expected = 'a label name or "}"' if not matchers else "a label name"
                self.fail(f"expected {expected}, found {self.found()}")
            op = self.one_of(MATCH_OPS)
            if op is None:
                self.fail(f"expected =, !=, =~ or !~ after the label name, found {self.found()}")
            at, value = self.string()
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    self.fail(f"invalid regular expression {value!r}: {exc.msg}", at)
            matchers.append(LabelMatcher(label, op, value))
            if not self.take(","):
                self.expect("}", 'or "," after the matcher')
                break
        return Selector(metric, tuple(matchers))

    def duration(self) -> float:
        self.ws()
        start = self.pos
        token = self.match(_DURATION)
        if token is None:
            self.fail(f"expected a duration like 5m, 30s or 1h30m, found {self.found()}")
        total: Any = 0  # int milliseconds; a Fraction once a part has a decimal point
        at = 0
        for m in _DURATION_PART.finditer(token):
            if m.start() != at:
                break
            number = m.group(1)
            if "." in number:  # exact sums of "1.1m"; rare enough to load late (0.3 MB)
                from fractions import Fraction

                total += Fraction(number) * _DURATION_MS[m.group(2)]
            else:
                total += int(number) * _DURATION_MS[m.group(2)]
            at = m.end()
        if at != len(token):
            self.pos = start
            self.fail(f"expected a duration like 5m, 30s or 1h30m, found {self.found()}")
        if total == 0:
            self.fail("a range must be longer than 0", start)
        return float(total / 1000)

    def range(self) -> float:
        self.take("[")  # the caller saw it
        window = self.duration()
        self.expect("]", "to close the range")
        return window


def leaf_call(p: _Parser, name: str, start: int) -> Expr:
    """What follows a name: a function over a selector, or the selector
    itself; an Expr with no comparison (op "")."""
    window: float | None = None
    arg: float | None = None
    func: str | None = None
    if p.take("("):
        over_time = name == "absent_over_time"  # PromQL's name for absent() over a range
        if over_time:
            name = "absent"
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            # reached: the name only, so the compound parser's word wins when
            # it read further (an aggregation such as sum( is its to judge)
            raise ExprError(
                f'unknown function "{name}"; {hint}expected one of {", ".join(FUNCTIONS)}, '
                "or an aggregation: sum, count, avg, min, max",
                start + 1,
                p.text,
                start,
            )
        func = name
        metric = p.match(_METRIC)
        if metric is None:
            p.fail(f"expected a metric name, found {p.found()}")
        selector = p.selector(metric)
        if p.peek("["):
            window = p.range()
        elif func != "absent" or over_time:
            example = f"{func}({metric}[5m]{', 3600' if func == 'predict_linear' else ''})"
            p.fail(f'{func}() needs a range: expected "[" as in {example}, found {p.found()}')
        if func == "predict_linear":
            p.expect(",", "then the seconds ahead to predict")
            arg = p.number("the seconds ahead to predict")
        p.expect(")", f"to close {func}(")
    else:
        selector = p.selector(name)
    return Expr(p.text[start : p.pos].strip(), func, selector, window, arg, "", 0.0)


def parse(text: str) -> Expr:
    """Parse a one-selector expression; ExprError names what was expected,
    and where. query.parse reads compound ones too: rules go through it."""
    p = _Parser(text)
    p.ws()
    start = p.pos
    name = p.match(_METRIC)
    if name is None:
        p.fail(f"expected a metric name or a function like avg_over_time(, found {p.found()}")
    leaf = leaf_call(p, name, start)
    if leaf.func is None and p.peek("["):
        p.fail(f"a range needs a function around it, like avg_over_time({name}[5m])")
    if leaf.func == "absent" and p.at_end():
        op, threshold = "==", 1.0
    else:
        op = p.comparison()
        threshold = p.number("a number to compare with")
    if not p.at_end():
        p.fail(f"unexpected {p.found()} after the expression")
    return Expr(text, leaf.func, leaf.selector, leaf.window, leaf.arg, op, threshold)


_UP, _DOWN = (">", ">="), ("<", "<=")


def parse_clear(text: str, expr: Expr) -> tuple[str, float]:
    """A rule's `clear` hysteresis, an operator and a number: "< 70".

    A bare number is refused rather than guessed at. Only an expression with
    >, >=, < or <= can have one; the clear condition must point the other way
    and must not overlap the firing one (expr "> 80" takes "< 70" or "<= 80",
    not "< 90"), else the alert could be firing and cleared at once.
    """
    p = _Parser(text)
    p.ws()
    if p.at_end():
        p.fail('expected a comparison and a number, like "< 70", found end of input')
    if _NUMBER.match(text, p.pos) or _NOT_FINITE.match(text, p.pos):
        p.fail('expected a comparison before the number, like "< 70"')
    op_at = p.pos
    op = p.comparison()
    p.ws()
    value_at = p.pos
    value = p.number("a number")
    if not p.at_end():
        p.fail(f"unexpected {p.found()} after the number")
    if not expr.op:
        p.fail(
            "clear needs an expr compared with a number at its top (... > 0.05); this one "
            "fires on every series its and/or/unless keeps, so only `for` can steady it",
            0,
        )
    if expr.op not in _UP + _DOWN:
        p.fail(f'clear needs an expr compared with >, >=, < or <=, not "{expr.op}"', 0)
    want = _DOWN if expr.op in _UP else _UP
    if op not in want:
        p.fail(
            f'expected {" or ".join(want)} to clear an alert on "{expr.op}", found "{op}"', op_at
        )
    strict = expr.op in (">=", "<=") and op in (">=", "<=")
    if expr.op in _UP:
        overlaps = value >= expr.threshold if strict else value > expr.threshold
    else:
        overlaps = value <= expr.threshold if strict else value < expr.threshold
    if overlaps:
        p.fail(
            f'"{op} {value:g}" overlaps the firing condition "{expr.op} {expr.threshold:g}"',
            value_at,
        )
    return op, value


COMPARE = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def compare(op: str, value: float, threshold: float) -> bool:
    """`value op threshold`, IEEE semantics: NaN compares false except for !=."""
    try:
        test = COMPARE[op]
    except KeyError:
        raise ValueError(f"unknown comparison {op!r}") from None
    return bool(test(value, threshold))


def _increase_values(values: Sequence[float]) -> float:
    # As Prometheus: last - first, plus the value before each reset. Most
    # windows hold no reset: one C-level sort tells, before any Python loop.
    if list(values) == sorted(values):
        return values[-1] - values[0]
    resets = math.fsum(a for a, b in itertools.pairwise(values) if b < a)
    return values[-1] - values[0] + resets


def _predict_arrays(
    ts: Sequence[float], vs: Sequence[float], now: float, ahead: float
) -> float | None:
    # Least squares with x measured from `now`, on centred sums for accuracy;
    # the products are summed with map() so the loops run in C.
    n = len(ts)
    mx = math.fsum(ts) / n - now
    my = math.fsum(vs) / n
    dx = [t - now - mx for t in ts]
    dy = [v - my for v in vs]
    sxx = math.fsum(map(operator.mul, dx, dx))
    if sxx == 0:
        return None
    slope = math.fsum(map(operator.mul, dx, dy)) / sxx
    return my + slope * (ahead - mx)


def evaluate(expr: Expr, samples: Sequence[tuple[float, float]], now: float) -> float | None:
    """One series' value at `now` from its time-ordered (ts, value) samples;
    None when it has none (nothing in the window, stale, too few samples)."""
    return evaluate_arrays(expr, [t for t, _ in samples], [v for _, v in samples], now)


Evaluator = Callable[[Sequence[float], Sequence[float], float], "float | None"]


@functools.lru_cache(maxsize=1024)
def evaluator(expr: Expr) -> Evaluator:
    """`evaluate` for one expression on a series kept as two parallel arrays
    of timestamps and values, the engine's storage, specialised once per
    rule: the engine calls it for every sample. The window is found by
    bisection and sliced in C."""
    func, window = expr.func, expr.window
    if func is None:

        def latest(ts: Sequence[float], values: Sequence[float], now: float) -> float | None:
            hi = bisect_right(ts, now)
            return values[hi - 1] if hi and ts[hi - 1] > now - STALE else None

        return latest
    if func == "absent" or window is None:
        return lambda ts, values, now: None
    if func in _REDUCERS:
        reduce = _REDUCERS[func]

        def over_time(ts: Sequence[float], values: Sequence[float], now: float) -> float | None:
            hi = bisect_right(ts, now)
            lo = bisect_right(ts, now - window, 0, hi)
            return reduce(values[lo:hi]) if lo < hi else None

        return over_time
    if func in ("increase", "rate"):
        per_second = func == "rate"

        def increase(ts: Sequence[float], values: Sequence[float], now: float) -> float | None:
            hi = bisect_right(ts, now)
            lo = bisect_right(ts, now - window, 0, hi)
            if hi - lo < 2:
                return None
            total = _increase_values(values[lo:hi])
            if not per_second:
                return total
            elapsed = ts[hi - 1] - ts[lo]
            return total / elapsed if elapsed > 0 else None

        return increase
    if func == "predict_linear":
        ahead = expr.arg or 0.0

        def predict(ts: Sequence[float], values: Sequence[float], now: float) -> float | None:
            hi = bisect_right(ts, now)
            lo = bisect_right(ts, now - window, 0, hi)
            if hi - lo < 2:
                return None
            return _predict_arrays(ts[lo:hi], values[lo:hi], now, ahead)

        return predict
    raise ValueError(f"unknown function {func!r}")


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


_REDUCERS: dict[str, Callable[[Sequence[float]], float]] = {
    "avg_over_time": _mean,
    "max_over_time": max,
    "min_over_time": min,
}


def evaluate_arrays(
    expr: Expr, ts: Sequence[float], values: Sequence[float], now: float
) -> float | None:
    """`evaluate` on two parallel arrays; see `evaluator`."""
    return evaluator(expr)(ts, values, now)
