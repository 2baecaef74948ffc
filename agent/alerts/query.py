r"""Compound alert expressions: PromQL's binary operators and aggregations
over the host's own series.

A rule whose `expr` is not the one-selector shape of expr.py is parsed
here (`parse_query`) into a tree evaluated as a whole: an instant vector
(labels -> value) per node, as in Prometheus::

    expr   := expr BINOP [modifiers] expr | AGG ... | "(" expr ")"
            | number | selector | FUNC(selector range ...) | absent(...)
    BINOP  := or  <  and unless  <  == != > >= < <=  <  + -  <  * / %
              (loosest first; all left-associative)
    modifiers := ["bool"] [("on" | "ignoring") "(" labels ")"]
    AGG    := (sum | count | avg | min | max)
              [("by" | "without") "(" labels ")"] "(" expr ")" [("by" | "without") "(" labels ")"]

Semantics, as PromQL's unless said otherwise:

- Arithmetic and comparisons between two vectors match series one to one
  on all their labels, or on the labels of `on(...)`, or on all but those
  of `ignoring(...)`. The result has the left side's labels (only the
  `on` ones, or without the `ignoring` ones). Several series with the
  same match labels on one side is an evaluation error, as in Prometheus
  (`group_left`/`group_right` are not supported: aggregate first).
- A comparison keeps the series for which it holds, with the left side's
  value (`bool` gives 0 or 1 for every pair instead). With a number on one
  side it filters the vector's series.
- `and`: the left's series with a match on the right; `or`: all the
  left's, then the right's with no match on the left; `unless`: the left's
  with no match on the right.
- `sum`, `count`, `avg`, `min`, `max` group by the `by` labels or by all but
  the `without` ones; `min`/`max` skip NaN.
- x / 0 is +Inf, -Inf or NaN, as IEEE floats; % is C's fmod.

One difference, a subset over its whole: `rate(x{status_class="5xx"}[5m])
/ rate(x[5m])` divides each series by itself in PromQL (one-to-one on all
labels: the 5xx series by the 5xx series, always 1). When both sides of
`/` are the same function of the same metric (maybe scaled by a number)
and carry no `on` or `ignoring`, the labels whose matchers differ between
the sides are summed away on both sides first, so it reads as
`sum without(status_class) (rate(x{status_class="5xx"}[5m])) /
sum without(status_class) (rate(x[5m]))`: the 5xx share, per the labels
left. `Query.shown` is that PromQL; `vigil alerts test` prints it.

Window functions here do not wait for coverage (window.py), as in
Prometheus: the engine evaluates a compound rule at its tick, and a
series missing from the result resolves its instance.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.alerts.expr import (
    _LABEL,
    _METRIC,
    _NOT_FINITE,
    _NUMBER,
    COMPARE,
    COMPARISONS,
    Expr,
    ExprError,
    Selector,
    _Parser,
    leaf_call,
)
from agent.alerts.expr import parse as parse_simple

LabelsKey = tuple[tuple[str, str], ...]
Vector = dict[LabelsKey, float]
Value = float | Vector

AGGREGATIONS = ("sum", "count", "avg", "min", "max")
SET_OPS = ("and", "or", "unless")
ARITHMETIC = ("+", "-", "*", "/", "%")
# loosest first; comparisons are expr.COMPARISONS (longest first, for scanning)
PRECEDENCE = {"or": 1, "and": 2, "unless": 2, **dict.fromkeys(COMPARISONS, 3)}
PRECEDENCE |= {"+": 4, "-": 4, "*": 5, "/": 5, "%": 5}
KEYWORDS = {*SET_OPS, *AGGREGATIONS, "by", "without", "on", "ignoring", "bool"}


class QueryError(Exception):
    """An evaluation that has no answer (duplicate series on a side of a
    one-to-one match): the engine keeps the rule's state, logs and counts it."""


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Leaf:
    """A selector, maybe inside a window function: expr.py's Expr with no
    comparison, evaluated per series by expr.evaluator."""

    expr: Expr


@dataclass(frozen=True)
class Agg:
    op: str
    grouping: str  # "by" | "without"
    labels: tuple[str, ...]
    arg: Node


@dataclass(frozen=True)
class Bin:
    op: str
    lhs: Node
    rhs: Node
    matching: str = ""  # "" | "on" | "ignoring"
    labels: tuple[str, ...] = ()
    bool_: bool = False


Node = Num | Leaf | Agg | Bin


def is_vector(node: Node) -> bool:
    if isinstance(node, Num):
        return False
    if isinstance(node, Bin):
        return is_vector(node.lhs) or is_vector(node.rhs)
    return True


def leaves(node: Node) -> Iterable[Expr]:
    if isinstance(node, Leaf):
        yield node.expr
    elif isinstance(node, Agg):
        yield from leaves(node.arg)
    elif isinstance(node, Bin):
        yield from leaves(node.lhs)
        yield from leaves(node.rhs)


# -- printing: the PromQL a tree means ------------------------------------------------------


def _labels(names: tuple[str, ...]) -> str:
    return "(" + ", ".join(names) + ")"


def _selector(s: Selector) -> str:
    if not s.matchers:
        return s.metric
    inner = ", ".join(f"{m.name}{m.op}{_quote_value(m.value)}" for m in s.matchers)
    return f"{s.metric}{{{inner}}}"


def _quote_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped.replace(chr(9), chr(92) + "t").replace(chr(13), chr(92) + "r")}"'


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def number(value: float) -> str:
    """A number as PromQL reads it back exactly: 1234567, 0.1234567, 1e+300."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def show(node: Node) -> str:
    """The node as PromQL (fully parenthesised where precedence could mislead)."""
    if isinstance(node, Num):
        return number(node.value)
    if isinstance(node, Leaf):
        e = node.expr
        sel = _selector(e.selector)
        if e.func is None:
            return sel
        inner = sel + (f"[{_duration(e.window)}]" if e.window is not None else "")
        if e.func == "absent" and e.window is not None:
            return f"absent_over_time({inner})"  # PromQL's name for absent over a range
        if e.func == "predict_linear":
            inner += f", {number(e.arg or 0.0)}"
        return f"{e.func}({inner})"
    if isinstance(node, Agg):
        by = f" {node.grouping} {_labels(node.labels)}" if node.grouping else ""
        return f"{node.op}{by} ({show(node.arg)})"
    ops = [node.op]
    if node.bool_:
        ops.append("bool")
    if node.matching:
        ops.append(f"{node.matching}{_labels(node.labels)}")
    return f"{_wrap(node.lhs, node, False)} {' '.join(ops)} {_wrap(node.rhs, node, True)}"


def _wrap(child: Node, parent: Bin, right: bool) -> str:
    text = show(child)
    if isinstance(child, Bin):
        mine, theirs = PRECEDENCE[parent.op], PRECEDENCE[child.op]
        if theirs < mine or (right and theirs == mine):
            return f"({text})"
    return text


# -- parsing --------------------------------------------------------------------------------


MAX_NESTING = 32  # parentheses and aggregations inside one another
MAX_OPERATORS = 64  # binary operators in one expression


class _QueryParser(_Parser):
    """Bounded: a rule is written by hand, and the parser and evaluation
    recurse, so nesting and length have limits far past any real rule."""

    nesting = 0
    operators = 0

    def nest(self) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            self.fail(f"more than {MAX_NESTING} levels of parentheses and aggregations")

    def binary_op(self) -> str | None:
        """The binary operator at the cursor, not consumed."""
        self.ws()
        for word in SET_OPS:
            if self._word_at(word):
                return word
        for token in (*COMPARISONS, *ARITHMETIC):
            if self.text.startswith(token, self.pos):  # longest first: ">=" before ">"
                return token
        return None

    def _word_at(self, word: str) -> bool:
        end = self.pos + len(word)
        if not self.text.startswith(word, self.pos):
            return False
        return end >= len(self.text) or not (self.text[end].isalnum() or self.text[end] in "_:")

    def keyword(self, word: str) -> bool:
        self.ws()
        if self._word_at(word):
            self.pos += len(word)
            return True
        return False

    def label_list(self, what: str) -> tuple[str, ...]:
        self.expect("(", f"after {what}")
        names: list[str] = []
        while not self.take(")"):
            name = self.match(_LABEL)
            if name is None:
                self.fail(f"expected a label name in {what}(...), found {self.found()}")
            names.append(name)
            if not self.take(","):
                self.expect(")", f'or "," in {what}(...)')
                break
        return tuple(names)

    def expr(self, loosest: int = 1) -> Node:
        lhs = self.operand()
        while True:
            op = self.binary_op()
            if op is None or PRECEDENCE[op] < loosest:
                return lhs
            at = self.pos
            self.operators += 1
            if self.operators > MAX_OPERATORS:
                self.fail(f"more than {MAX_OPERATORS} operators in one expression")
            self.pos += len(op)
            bool_ = op in COMPARISONS and self.keyword("bool")
            matching: str = ""
            labels: tuple[str, ...] = ()
            for word in ("on", "ignoring"):
                if self.keyword(word):
                    matching, labels = word, self.label_list(word)
                    break
            for word in ("group_left", "group_right"):
                if self.keyword(word):
                    self.fail(
                        f"{word} is not supported: aggregate the side with several series "
                        "first, e.g. sum by (...) (...)",
                        self.pos - len(word),
                    )
            rhs = self.expr(PRECEDENCE[op] + 1)
            lhs = self.binary(op, lhs, rhs, matching, labels, bool_, at)

    def binary(
        self,
        op: str,
        lhs: Node,
        rhs: Node,
        matching: str,
        labels: tuple[str, ...],
        bool_: bool,
        at: int,
    ) -> Node:
        vectors = is_vector(lhs), is_vector(rhs)
        if op in SET_OPS and not all(vectors):
            self.fail(f'"{op}" needs a series expression on both sides, not a number', at)
        if matching and not all(vectors):
            self.fail(f"{matching}(...) matches two series expressions; one side is a number", at)
        if op in COMPARISONS and not any(vectors) and not bool_:
            self.fail("comparing two numbers needs bool, as in 1 > bool 0", at)
        if op == "/" and not matching:
            return subset_ratio(lhs, rhs)
        return Bin(op, lhs, rhs, matching, labels, bool_)

    def operand(self) -> Node:
        self.ws()
        start = self.pos
        if self.take("("):
            self.nest()
            inner = self.expr()
            self.expect(")", "to close the parenthesis")
            self.nesting -= 1
            return inner
        if _NUMBER.match(self.text, start) or _NOT_FINITE.match(self.text, start):
            return Num(self.number("a number"))
        name = self.match(_METRIC)
        if name is None:
            self.fail(f"expected a metric, a function, a number or (, found {self.found()}")
        if name in AGGREGATIONS and (self.peek("(") or self.peek("by") or self.peek("without")):
            return self.aggregation(name)
        if name in KEYWORDS:
            self.fail(f'"{name}" is a keyword; expected a metric, a function or a number', start)
        leaf = leaf_call(self, name, start)
        if leaf.func is None and self.peek("["):
            self.fail(f"a range needs a function around it, like avg_over_time({name}[5m])")
        return Leaf(leaf)

    def aggregation(self, op: str) -> Node:
        grouping: str = ""
        labels: tuple[str, ...] = ()
        for word in ("by", "without"):
            if self.keyword(word):
                grouping, labels = word, self.label_list(word)
        self.expect("(", f"after {op}")
        self.nest()
        at = self.pos
        arg = self.expr()
        self.nesting -= 1
        if not is_vector(arg):
            self.fail(f"{op}() aggregates series; found a number", at)
        self.expect(")", f"to close {op}(")
        if not grouping:
            for word in ("by", "without"):
                if self.keyword(word):
                    grouping, labels = word, self.label_list(word)
        return Agg(op, grouping, labels, arg)


def subset_ratio(lhs: Node, rhs: Node) -> Node:
    """`x{a="v"} / x` as the share it means: see the module's docstring.
    Either side may be scaled by a number (`100 * x{a="v"} / x`)."""
    left, right = _scaled_leaf(lhs), _scaled_leaf(rhs)
    if left is None or right is None:
        return Bin("/", lhs, rhs)
    a, b = left.expr, right.expr
    if (a.selector.metric, a.func, a.window, a.arg) != (b.selector.metric, b.func, b.window, b.arg):
        return Bin("/", lhs, rhs)
    if a.func == "absent":
        return Bin("/", lhs, rhs)

    def restricted(leaf: Expr) -> dict[str, set[tuple[str, str]]]:
        out: dict[str, set[tuple[str, str]]] = {}
        for m in leaf.selector.matchers:
            out.setdefault(m.name, set()).add((m.op, m.value))
        return out

    ra, rb = restricted(a), restricted(b)
    differ = {name for name in ra.keys() | rb.keys() if ra.get(name) != rb.get(name)}
    if not differ:
        return Bin("/", lhs, rhs)
    names = tuple(sorted(differ))
    return Bin(
        "/",
        _replace_leaf(lhs, Agg("sum", "without", names, left)),
        _replace_leaf(rhs, Agg("sum", "without", names, right)),
    )


def _scaled_leaf(node: Node) -> Leaf | None:
    """The leaf of `node` if it is one, or one multiplied or divided by a number."""
    if isinstance(node, Leaf):
        return node
    if isinstance(node, Bin) and node.op in ("*", "/") and not node.matching:
        if isinstance(node.rhs, Num):
            return _scaled_leaf(node.lhs)
        if isinstance(node.lhs, Num) and node.op == "*":
            return _scaled_leaf(node.rhs)
    return None


def _replace_leaf(node: Node, new: Node) -> Node:
    if isinstance(node, Leaf):
        return new
    assert isinstance(node, Bin)  # _scaled_leaf found the leaf under it
    if isinstance(node.rhs, Num):
        return Bin(node.op, _replace_leaf(node.lhs, new), node.rhs)
    return Bin(node.op, node.lhs, _replace_leaf(node.rhs, new))


@dataclass(frozen=True)
class Query:
    """A compound rule: `node`, compared with `threshold` by `op` when the
    expression is `... op number` (so `clear` works as for simple rules);
    with no `op`, every series in the result fires."""

    node: Node
    op: str
    threshold: float

    def leaves(self) -> tuple[Expr, ...]:
        return tuple(leaves(self.node))

    @property
    def shown(self) -> str:
        text = show(self.node)
        return f"{text} {self.op} {number(self.threshold)}" if self.op else text


def parse_tree(text: str) -> tuple[Node, _QueryParser]:
    """The whole expression as a tree (and its parser, for errors about it)."""
    p = _QueryParser(text)
    node = p.expr()
    if not p.at_end():
        p.fail(f"unexpected {p.found()} after the expression")
    return node, p


def parse_query(text: str) -> Query:
    node, p = parse_tree(text)
    if not is_vector(node):
        p.fail("an alert expression must select series; this one is only numbers", 0)
    if isinstance(node, Bin) and node.op in COMPARISONS and node.bool_:
        p.fail("bool at the top gives every series 0 or 1, so every one would fire; drop bool", 0)
    if isinstance(node, Bin) and node.op in COMPARISONS:
        if isinstance(node.rhs, Num) and is_vector(node.lhs):
            return Query(node.lhs, node.op, node.rhs.value)
        if isinstance(node.lhs, Num) and is_vector(node.rhs):
            return Query(node.rhs, FLIPPED[node.op], node.lhs.value)
        return Query(node, "", math.nan)
    if isinstance(node, Bin) and node.op in SET_OPS:
        return Query(node, "", math.nan)
    p.fail(
        "expected a comparison (>, >=, <, <=, ==, !=) or and/or/unless at the top of the "
        f"expression, found {p.found()}"
    )


@dataclass(frozen=True)
class CompoundExpr(Expr):
    """A rule's expression that is not one selector: func "query"; its
    selector is the first leaf's (for messages), `query` the whole."""

    query: Query = field(default=None)  # type: ignore[assignment]  # always given

    def lookback(self) -> float:
        return max(leaf.lookback() for leaf in self.leaves())

    def leaves(self) -> tuple[Expr, ...]:
        return self.query.leaves()


def parse(text: str) -> Expr:
    """A rule's expression: the one-selector shape (expr.parse), else a
    compound one. When neither reads it, the error of the parser that read
    further into the text is the one reported (the one-selector one on a
    tie: its messages are the more specific)."""
    try:
        return parse_simple(text)
    except ExprError as simple:
        try:
            query = parse_query(text)
        except ExprError as compound:
            raise compound if compound.reached > simple.reached else simple from None
        first = query.leaves()[0]
        return CompoundExpr(
            text, "query", first.selector, None, None, query.op, query.threshold, query
        )


FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


# -- evaluation ------------------------------------------------------------------------------

Source = Callable[[Expr], Vector]
"""A leaf's vector at the evaluation time: the engine's series, evaluated."""


def evaluate(node: Node, source: Source) -> Value:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Leaf):
        return source(node.expr)
    if isinstance(node, Agg):
        arg = evaluate(node.arg, source)
        assert isinstance(arg, dict)  # the parser refuses a number
        return _aggregate(node, arg)
    lhs, rhs = evaluate(node.lhs, source), evaluate(node.rhs, source)
    if node.op in SET_OPS:
        assert isinstance(lhs, dict) and isinstance(rhs, dict)
        return _set_op(node, lhs, rhs)
    if isinstance(lhs, dict) and isinstance(rhs, dict):
        return _vector_op(node, lhs, rhs)
    if isinstance(lhs, dict):
        assert isinstance(rhs, float)
        return _scalar_op(node, lhs, rhs, vector_left=True)
    if isinstance(rhs, dict):
        return _scalar_op(node, rhs, lhs, vector_left=False)
    return _apply(node.op, lhs, rhs, node.bool_) or 0.0  # number op number: bool only


def _divide(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _modulo(a: float, b: float) -> float:
    return math.nan if b == 0 or math.isinf(a) else math.fmod(a, b)


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "%": _modulo,
}


def _apply(op: str, a: float, b: float, bool_: bool) -> float | None:
    """a op b; for a comparison, None when it filters the pair out."""
    if op in _ARITH:
        try:
            return _ARITH[op](a, b)
        except OverflowError:
            return math.copysign(math.inf, a) if op != "-" else -math.inf
    holds = COMPARE[op](a, b)
    if bool_:
        return 1.0 if holds else 0.0
    return a if holds else None


def _scalar_op(node: Bin, vector: Vector, number: float, vector_left: bool) -> Vector:
    out: Vector = {}
    for key, value in vector.items():
        a, b = (value, number) if vector_left else (number, value)
        result = _apply(node.op, a, b, node.bool_)
        if result is None:
            continue
        if node.op in COMPARISONS and not node.bool_:
            result = value  # a filter keeps the series' own value
        out[key] = result
    return out


def _signature(node: Bin) -> Callable[[LabelsKey], LabelsKey]:
    names = frozenset(node.labels)
    if node.matching == "on":
        return lambda key: tuple(kv for kv in key if kv[0] in names)
    if node.matching == "ignoring":
        return lambda key: tuple(kv for kv in key if kv[0] not in names)
    return lambda key: key


def _unique(
    vector: Vector, sig: Callable[[LabelsKey], LabelsKey], node: Bin, side: str
) -> dict[LabelsKey, tuple[LabelsKey, float]]:
    out: dict[LabelsKey, tuple[LabelsKey, float]] = {}
    for key, value in vector.items():
        s = sig(key)
        if s in out:
            raise QueryError(
                f"several series on the {side} of {node.op!r} match on {dict(s)}: "
                f"{dict(out[s][0])} and {dict(key)}; aggregate them (sum by ...) or "
                "match on labels that tell them apart (on/ignoring)"
            )
        out[s] = (key, value)
    return out


def _vector_op(node: Bin, lhs: Vector, rhs: Vector) -> Vector:
    """One to one: the right side's match labels must be unique; the left's
    only among the results (a comparison may filter a duplicate out), as in
    Prometheus."""
    sig = _signature(node)
    right = _unique(rhs, sig, node, "right")
    out: Vector = {}
    first: dict[LabelsKey, LabelsKey] = {}
    for key, a in lhs.items():
        s = sig(key)
        if s not in right:
            continue
        result = _apply(node.op, a, right[s][1], node.bool_)
        if result is None:
            continue
        out_key = s if node.matching == "on" else key if not node.matching else s
        if out_key in out:
            raise QueryError(
                f"several series on the left of {node.op!r} match on {dict(s)}: "
                f"{dict(first[out_key])} and {dict(key)}; aggregate them (sum by ...) or "
                "match on labels that tell them apart (on/ignoring)"
            )
        first[out_key] = key
        out[out_key] = result
    return out


def _set_op(node: Bin, lhs: Vector, rhs: Vector) -> Vector:
    sig = _signature(node)
    right = {sig(k) for k in rhs}
    if node.op == "and":
        return {k: v for k, v in lhs.items() if sig(k) in right}
    if node.op == "unless":
        return {k: v for k, v in lhs.items() if sig(k) not in right}
    left = {sig(k) for k in lhs}
    return {**lhs, **{k: v for k, v in rhs.items() if sig(k) not in left}}


_GROUPS: dict[tuple[str, frozenset[str], LabelsKey], LabelsKey] = {}
"""(grouping, labels, a series' labels) -> its group: the same every tick."""


def _group_of(grouping: str, names: frozenset[str], key: LabelsKey) -> LabelsKey:
    memo = (grouping, names, key)
    group = _GROUPS.get(memo)
    if group is None:
        if len(_GROUPS) > 200_000:  # series come and go: bounded, rebuilt as needed
            _GROUPS.clear()
        if grouping == "by":
            group = tuple(kv for kv in key if kv[0] in names)
        elif grouping == "without":
            group = tuple(kv for kv in key if kv[0] not in names)
        else:
            group = ()
        _GROUPS[memo] = group
    return group


def _aggregate(node: Agg, vector: Vector) -> Vector:
    names = frozenset(node.labels)
    groups: dict[LabelsKey, list[float]] = {}
    for key, value in vector.items():
        group = _group_of(node.grouping, names, key)
        values = groups.get(group)
        if values is None:
            groups[group] = [value]
        else:
            values.append(value)
    reduce = _REDUCE[node.op]
    return {group: reduce(values) for group, values in groups.items()}


def _min_max(pick: Callable[..., float]) -> Callable[[list[float]], float]:
    def reduce(values: list[float]) -> float:
        numbers = [v for v in values if not math.isnan(v)]
        return pick(numbers) if numbers else math.nan

    return reduce


def _sum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # inf - inf, or a sum past the float range
        return sum(values)


def _mean(values: list[float]) -> float:
    mean = _sum(values) / len(values)
    if math.isinf(mean) and all(math.isfinite(v) for v in values):
        return _sum([v / len(values) for v in values])  # the sum overflowed, the mean need not
    return mean


_REDUCE: dict[str, Callable[[list[float]], float]] = {
    "sum": _sum,
    "count": lambda values: float(len(values)),
    "avg": lambda values: _mean(values),
    "min": _min_max(min),
    "max": _min_max(max),
}


def absent_vector(leaf: Expr, present: bool) -> Vector:
    """absent()'s answer: one series with the `=` labels when nothing matches."""
    if present:
        return {}
    labels = sorted((m.name, m.value) for m in leaf.selector.matchers if m.op == "=")
    return {tuple(labels): 1.0}
