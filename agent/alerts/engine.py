"""The alert engine: rules evaluated on the host as samples arrive.

Samples. Every record batch a collector produces passes through
`observe()`. Only metrics some rule names are kept, per series, as two
float arrays trimmed to the longest window a rule needs: memory is bounded
by (rules' lookback / interval) x series, 16 bytes a sample.

Evaluation. A batch re-evaluates the rules on the metrics it carried, for
the series it carried; a periodic `tick()` re-evaluates everything, which
advances `for` timers, resolves alerts whose series went stale and fires
`absent()` rules (absence brings no samples). Compound rules (query.py)
read every series of their metrics at once, so they are evaluated at the
tick only: once per `evaluate_every`, not once per batch (each check is a
batch of its own).

States, per instance (rule + the series' labels)::

    inactive --cond--> pending --cond for `for`--> firing --!clear--> resolved
       ^                  |                                              |
       +------!cond-------+---------------------------------------------+

With `clear` (hysteresis), a firing alert resolves only when the clear
condition holds, e.g. "> 80" fires and "< 70" resolves. A firing alert is
notified again every `repeat` (0: never). Every transition is an event
(type "alert") for the buffer, so the hub sees the history.

Coverage. A window rule (avg/max/min_over_time, rate, increase,
predict_linear) is evaluated on a series only once the samples in its
window span `min_coverage` of it (window.Coverage; 0.5 unless the rule or
`[alerting]` says otherwise), except the shapes a part of the window can
only understate (increase > T, max_over_time > T, min_over_time < T:
window.GROWING). Until then the series has no verdict: no
new instance, and a pending or firing one keeps its state (its `for`
timer runs on, but it fires only on a covered evaluation); one whose
window is empty is stale, as before. absent() and plain selectors are
not concerned.

Forecast band. predict_linear(s[w], t) op T with no `clear` gets a
hysteresis of its own: a pending or firing instance goes back to
inactive / resolves only when the line is on the safe side of T over the
whole of [t/2, 3t/2] ahead, i.e. its value at t/2 and at 3t/2 (the value
at t lies between them). In value terms the forecast must be past T by
half the change it predicts over t. A forecast extrapolates noise by
t / w (24 x for a 1 h window read a day ahead), so unlike a gauge it
gets this band for pending too: a forecast hovering at T stays pending
instead of flapping, and `for` counts from its first crossing.

Persistence. Instances that are pending or firing are written to
STATE_DIR/alerts.json (atomically) on every transition, so a restart keeps
their timers and neither notifies again nor forgets them; an alert that
stopped while the agent was down resolves (and is notified) at the first
evaluation after the start.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import string
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import structlog

from agent.alerts.expr import (
    COMPARE,
    STALE,
    Evaluator,
    Expr,
    compare,
    evaluate_arrays,
    evaluator,
    parse_clear,
)
from agent.alerts.query import CompoundExpr, QueryError, absent_vector, parse
from agent.alerts.query import evaluate as evaluate_query
from agent.alerts.window import Bound, Coverage, bound, coverage, covered_fraction, series_evaluator
from agent.core.alert import Alert
from agent.core.atomic import Snapshot, set_aside, write_atomically
from agent.core.records import Event, Metric, Record

log = structlog.get_logger("vigil.alerts")

LabelsKey = tuple[tuple[str, str], ...]
Compare = Callable[[float, float], bool]
MAX_SAMPLES = 4096  # per series, whatever the window: a bound on memory
MIN_COVERAGE = 0.5  # of a rule's window its samples must span before it is evaluated
BAND = (0.5, 1.5)  # a forecast's safe band: its horizon times these (see "Forecast band")
TRIM_SLACK = 1.1  # a series holds up to 10 % more than it needs between trims
TRIM_AT = int(MAX_SAMPLES * TRIM_SLACK)


@dataclass(frozen=True)
class Rule:
    """A parsed [[alerts]] table."""

    name: str
    expr: Expr
    for_: float
    clear: tuple[str, float] | None
    severity: str
    labels: Mapping[str, str]
    summary: str
    repeat: float
    notify: tuple[str, ...]
    min_coverage: float = MIN_COVERAGE
    # predict_linear with no `clear`: the forecast at each end of its safe band
    band: tuple[Evaluator, Evaluator] | None = field(default=None, compare=False, repr=False)

    def firing_condition(self, value: float | None) -> bool:
        if not self.expr.op:  # a compound rule's series fire by being in its result
            return value is not None
        return value is not None and COMPARE[self.expr.op](value, self.expr.threshold)

    def still_firing(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.clear is None:
            return self.firing_condition(value)
        return not compare(self.clear[0], value, self.clear[1])

    def in_band(self, ts: Sequence[float], values: Sequence[float], now: float) -> bool:
        """A forecast rule's instance is not yet safely back: the line is on
        the firing side of the threshold somewhere in its band."""
        if self.band is None:
            return False
        test, threshold = COMPARE[self.expr.op], self.expr.threshold
        for forecast in self.band:
            value = forecast(ts, values, now)
            if value is not None and test(value, threshold):
                return True
        return False

    def in_band_of(self, value: float, slope: float) -> bool:
        """`in_band` from the forecast `t` ahead and the line's slope: the
        band's ends are `value -+ slope * t/2`."""
        test, threshold = COMPARE[self.expr.op], self.expr.threshold
        half = (self.expr.arg or 0.0) * (BAND[1] - BAND[0]) / 2
        return bool(test(value - slope * half, threshold) or test(value + slope * half, threshold))


class Series:
    """One series' recent samples: two parallel arrays, oldest first."""

    __slots__ = ("keep", "key", "rules", "ts", "values")

    def __init__(self, key: LabelsKey, keep: float) -> None:
        self.key = key  # the labels, sorted: a tuple is smaller than a dict
        self.keep = keep  # seconds of history the rules on it need
        self.ts = array("d")
        self.values = array("d")
        # the rules selecting it: (rule, its instance's fingerprint, the
        # evaluator, its comparison, its threshold, its Bound or None, its
        # Coverage or None), worked out once
        self.rules: list[
            tuple[Rule, str, Evaluator, Compare, float, Bound | None, Coverage | None]
        ] = []

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.key)

    def trim(self) -> None:
        """Drop what no rule needs any more. `observe` appends samples and
        calls this a tenth of `keep` late, not at every sample: one
        comparison per sample instead of a bisection and two moves."""
        times = self.ts
        cut = max(bisect_left(times, times[-1] - self.keep), len(times) - MAX_SAMPLES)
        del times[:cut]
        del self.values[:cut]


@dataclass
class Instance:
    """One alert instance's state; what is persisted."""

    rule: str
    labels: dict[str, str]
    state: str = "inactive"  # inactive | pending | firing
    since: float = 0.0  # when it became pending
    fired_at: float = 0.0
    last_notified: float = 0.0
    value: float | None = None
    resolved_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "labels": self.labels,
            "state": self.state,
            "since": self.since,
            "fired_at": self.fired_at,
            "last_notified": self.last_notified,
            "value": self.value,
        }


class _SafeFormat(string.Formatter):
    """`summary` templates: {value}, {duration} (the value in seconds, for
    people), {host}, {rule}, {severity} and the series' labels; an unknown
    name stays as written instead of failing."""

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, str) and key not in kwargs:
            return "{" + key + "}"
        return super().get_value(key, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> Any:
        try:
            return super().format_field(value, format_spec)
        except (ValueError, TypeError):
            return str(value)


def human_duration(seconds: float) -> str:
    """`seconds` as a person reads it: "45 s", "12 min", "5.5 h", "13.2 days"."""
    if not math.isfinite(seconds):
        return str(seconds)
    size = abs(seconds)
    if size < 120:
        return f"{seconds:.0f} s"
    if size < 7200:
        return f"{seconds / 60:.0f} min"
    if size < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    text = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class AlertEngine:
    def __init__(
        self,
        rules: Sequence[Rule],
        host: str,
        state_path: Path | None,
        notify: Callable[[Alert, Sequence[str]], None],
        emit: Callable[[Event], None],
    ) -> None:
        self.rules = list(rules)
        self.host = host
        self.state_path = state_path
        self.notify = notify  # (alert, the rule's notify list): routing is the caller's
        self.emit = emit
        self.by_metric: dict[str, list[Rule]] = {}  # one-selector rules, by their metric
        self.rule_by_name = {rule.name: rule for rule in self.rules}
        self.keep: dict[str, float] = {}  # metric -> how much history the rules need
        for rule in self.rules:
            for leaf in rule.expr.leaves():  # a compound rule reads several metrics
                metric = leaf.selector.metric
                if not isinstance(rule.expr, CompoundExpr):
                    self.by_metric.setdefault(metric, []).append(rule)
                self.keep[metric] = max(self.keep.get(metric, 0.0), leaf.lookback())
        self.series: dict[str, dict[LabelsKey, Series]] = {m: {} for m in self.keep}
        # metric -> labels in any order seen -> series: `observe` skips sorting
        self._lookup: dict[str, dict[LabelsKey, Series]] = {m: {} for m in self.keep}
        # a compound rule's last evaluation error (query.QueryError), until one succeeds
        self.errors: dict[str, str] = {}
        self.error_count = 0
        # a compound rule's leaf -> the series it selects (cleared when series come or go)
        self._selected: dict[Expr, list[tuple[LabelsKey, Series]]] = {}
        self._vectors: dict[tuple[Any, ...], dict[LabelsKey, float]] | None = None
        self._fingerprints: dict[tuple[str, LabelsKey], str] = {}  # compound instances'
        self.instances: dict[str, Instance] = {}  # fingerprint -> state
        self.evaluations = 0
        self.bounded = 0  # evaluations a window.Bound decided without reading the window
        self.started = time.time()
        self._dirty = False

    # -- persistence -----------------------------------------------------------------

    def load(self) -> None:
        """Restore pending and firing instances and the recent samples (blocking file I/O)."""
        if self.state_path is None:
            return
        self._load_series()
        try:
            data = json.loads(self.state_path.read_text())
            names = {r.name for r in self.rules}
            for fp, raw in data.get("instances", {}).items():
                if raw["rule"] in names:
                    self.instances[fp] = Instance(
                        raw["rule"],
                        dict(raw["labels"]),
                        raw["state"],
                        float(raw["since"]),
                        float(raw["fired_at"]),
                        float(raw["last_notified"]),
                        raw.get("value"),
                    )
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = set_aside(self.state_path)
            log.warning("alert_state_unreadable", error=str(exc), moved_to=str(aside))

    def save(self) -> None:
        """Write pending and firing instances atomically (blocking file I/O)."""
        snapshot = self.state_snapshot()
        if snapshot is not None:
            write_atomically(*snapshot)

    def state_snapshot(self) -> Snapshot | None:
        """What `save` writes, if anything changed. Taken on the event loop
        (where samples arrive), so the file can be written in a thread
        without the instances changing under it."""
        if self.state_path is None or not self._dirty:
            return None
        self._dirty = False
        live = {fp: i.to_dict() for fp, i in self.instances.items() if i.state != "inactive"}
        return self.state_path, json.dumps({"version": 1, "instances": live}).encode()

    @property
    def series_path(self) -> Path | None:
        return self.state_path.with_suffix(".series") if self.state_path else None

    def series_snapshot(self) -> Snapshot | None:
        """The samples the windows hold, so a restart does not blind the
        rules for a window's length; taken on the event loop, as state_snapshot."""
        path = self.series_path
        if path is None:
            return None
        data = {
            metric: [[list(s.key), s.ts.tobytes(), s.values.tobytes()] for s in store.values()]
            for metric, store in self.series.items()
        }
        return path, msgpack.packb(data, use_bin_type=True)

    def _load_series(self) -> None:
        path = self.series_path
        if path is None or not path.exists():
            return
        try:
            data = msgpack.unpackb(path.read_bytes(), raw=False)
            for metric, rows in data.items():
                if metric not in self.series:
                    continue  # no rule needs it any more
                for labels, ts, values in rows:
                    series = self._find_series(metric, {str(k): str(v) for k, v in labels})
                    series.ts.frombytes(ts)
                    series.values.frombytes(values)
                    if len(series.ts) != len(series.values):
                        raise ValueError("damaged series")
        except (
            ValueError,
            TypeError,
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
        ) as exc:
            for store in (*self.series.values(), *self._lookup.values()):
                store.clear()
            aside = set_aside(path)
            log.warning("alert_samples_unreadable", error=str(exc), moved_to=str(aside))

    # -- samples and evaluation ----------------------------------------------------------

    def observe(self, records: Iterable[Record], now: float) -> None:
        """Store the samples rules need; evaluate those rules on those series.

        The hot path of the engine (every sample of every collection): kept
        flat, as each call and lookup shows in the per-cycle CPU."""
        lookup = self._lookup
        instances = self.instances
        evaluations = bounded = 0
        for r in records:
            if not isinstance(r, Metric):
                continue
            store = lookup.get(r.name)
            if store is None:
                continue
            series = store.get(tuple(r.labels.items()))  # as the collector ordered them
            if series is None:
                series = self._find_series(r.name, r.labels)
            # Series.add, inlined: it runs for every sample
            times, ts = series.ts, r.ts
            if times and ts <= times[-1]:
                continue  # out of order or repeated: the newest sample wins
            sample = float(r.value)
            times.append(ts)
            series.values.append(sample)
            if times[0] < ts - series.keep * TRIM_SLACK or len(times) > TRIM_AT:
                series.trim()
            for rule, fp, evaluate, test, threshold, gate, cover in series.rules:
                evaluations += 1
                if gate is not None:
                    quiet = gate.quiet(times, series.values, now)  # every sample goes in
                    if fp not in instances:  # else it is evaluated, whatever the bound
                        if quiet:
                            bounded += 1
                            continue  # surely false, without reading the window
                        if gate.tighten(times, series.values, now):
                            continue  # the window's extreme shows it false
                if cover is not None and not cover(times, now):
                    continue  # too little of the window yet: no verdict, no transition
                value = evaluate(series.ts, series.values, now)
                if fp in instances or (value is not None and test(value, threshold)):
                    self._step(rule, fp, series.key, value, now, series, evaluate)
        self.evaluations += evaluations
        self.bounded += bounded

    def _find_series(self, metric: str, labels: Mapping[str, str]) -> Series:
        """The series for these labels, created if new. Series are kept under
        their sorted labels; the lookup also learns the order this caller
        used, so the next sample costs one dict lookup without sorting."""
        key = tuple(sorted(labels.items()))
        series = self.series[metric].get(key)
        if series is None:
            series = self.series[metric][key] = self._lookup[metric][key] = self._new_series(
                metric, key
            )
            self._selected.clear()  # compound rules' leaves select anew
        order = tuple(labels.items())
        if order != key:
            self._lookup[metric][order] = series
        return series

    def _new_series(self, metric: str, key: LabelsKey) -> Series:
        series = Series(key, self.keep[metric])
        labels = dict(key)
        # which rules select it, worked out once, with each instance's fingerprint
        series.rules = [
            (
                rule,
                fingerprint(rule.name, labels),
                series_evaluator(rule.expr),
                COMPARE[rule.expr.op],
                rule.expr.threshold,
                bound(rule.expr),
                coverage(rule.expr, rule.min_coverage, MAX_SAMPLES),
            )
            for rule in self.by_metric.get(metric, ())
            if rule.expr.func != "absent" and rule.expr.selector.matches(metric, labels)
        ]
        return series

    def forget_stale(self, now: float) -> int:
        """Drop series with no sample in their metric's lookback: a label that
        came and went (a mount, an interface, a check) must not keep memory
        for ever. Called now and then by the service; returns how many."""
        dropped = 0
        for metric, store in self.series.items():
            cutoff = now - self.keep[metric] - STALE
            dead = [key for key, s in store.items() if not s.ts or s.ts[-1] < cutoff]
            if not dead:
                continue
            for key in dead:
                del store[key]
            self._selected.clear()
            alive = set(map(id, store.values()))
            lookup = self._lookup[metric]
            for key in [k for k, s in lookup.items() if id(s) not in alive]:
                del lookup[key]
            dropped += len(dead)
        return dropped

    def tick(self, now: float) -> None:
        """What time alone changes: `for` timers and staleness of the pending
        and firing instances, and absent() rules. Series with no instance
        change only with new samples, which `observe` evaluates."""
        self._vectors = {}  # compound rules often share leaves: each is evaluated once a tick
        try:
            for rule in self.rules:
                if rule.expr.func == "absent":
                    self._evaluate_absent(rule, now)
                elif isinstance(rule.expr, CompoundExpr):
                    self._evaluate_query(rule, now)
        finally:
            self._vectors = None
        for fp, inst in list(self.instances.items()):
            found = self.rule_by_name.get(inst.rule)
            if found is None or found.expr.func in ("absent", "query"):
                continue
            rule = found
            series = self.series[rule.expr.selector.metric].get(tuple(sorted(inst.labels.items())))
            value, entry = None, None
            if series is not None:
                # the series' own evaluator: a predict_linear keeps its running sums
                # (none if the rule's selector no longer takes the saved labels)
                entry = next((e for e in series.rules if e[0] is rule), None)
                cover = entry[6] if entry is not None else None
                if cover is not None and not cover(series.ts, now):
                    if not cover.empty(series.ts, now):
                        continue  # samples, but too few of the window: no verdict, state kept
                elif entry is not None:
                    value = entry[2](series.ts, series.values, now)
            self.evaluations += 1
            fit = entry[2] if entry is not None else None
            self._step(rule, fp, inst.labels, value, now, series, fit)

    def _evaluate_query(self, rule: Rule, now: float) -> None:
        """A compound rule over everything the engine keeps: a step for each
        series in its result, and one with no value for each instance that
        left it. NaN (0/0: no requests at all) counts as no value."""
        assert isinstance(rule.expr, CompoundExpr)
        try:
            result = evaluate_query(rule.expr.query.node, functools.partial(self.vector, now=now))
        except QueryError as exc:  # no verdict: states are kept, the error shown
            self.error_count += 1
            if self.errors.get(rule.name) != str(exc):
                log.error("alert_evaluation_failed", rule=rule.name, error=str(exc))
            self.errors[rule.name] = str(exc)
            return
        self.errors.pop(rule.name, None)
        assert isinstance(result, dict)  # the parser refuses an expression of numbers
        seen = set()
        known = self._fingerprints
        if len(known) > 100_000:  # series come and go: bounded, rebuilt as needed
            known.clear()
        for key, value in result.items():
            fp = known.get((rule.name, key))
            if fp is None:
                fp = known[(rule.name, key)] = fingerprint(rule.name, dict(key))
            seen.add(fp)
            self.evaluations += 1
            self._step(rule, fp, key, None if math.isnan(value) else value, now)
        for fp, inst in list(self.instances.items()):
            if inst.rule == rule.name and fp not in seen:
                self.evaluations += 1
                self._step(rule, fp, inst.labels, None, now)

    def vector(self, leaf: Expr, now: float) -> dict[LabelsKey, float]:
        """A compound rule's leaf at `now`: each kept series it selects that
        has a value. No coverage wait, as in Prometheus: a series missing
        from a result resolves its instance, so a wait would resolve an
        alert whenever a slow check's window held one sample."""
        same = (leaf.func, leaf.selector, leaf.window, leaf.arg, now)
        if self._vectors is not None and same in self._vectors:
            return self._vectors[same]  # nothing downstream changes a vector in place
        selected = self._selected.get(leaf)
        if selected is None:
            metric, selector = leaf.selector.metric, leaf.selector
            selected = self._selected[leaf] = [
                (key, s)
                for key, s in self.series.get(metric, {}).items()
                if selector.matches(metric, dict(key))
            ]
        if leaf.func == "absent":
            window = leaf.window or leaf.lookback()
            present = any(s.ts and s.ts[-1] > now - window for _, s in selected)
            return absent_vector(leaf, present)
        evaluate = evaluator(leaf)
        out = {}
        for key, series in selected:
            value = evaluate(series.ts, series.values, now)
            if value is not None:
                out[key] = value
        if self._vectors is not None:
            self._vectors[same] = out
        return out

    def _evaluate_absent(self, rule: Rule, now: float) -> None:
        store = self.series[rule.expr.selector.metric]
        selector = rule.expr.selector
        window = rule.expr.window or rule.expr.lookback()
        present = any(
            series.ts and series.ts[-1] > now - window
            for series in store.values()
            if selector.matches(selector.metric, series.labels)
        )
        self.evaluations += 1
        labels = {m.name: m.value for m in selector.matchers if m.op == "="}
        value = 0.0 if present else 1.0
        self._step(rule, fingerprint(rule.name, labels), labels, value, now)

    def _step(
        self,
        rule: Rule,
        fp: str,
        labels: Mapping[str, str] | LabelsKey,
        value: float | None,
        now: float,
        series: Series | None = None,
        fit: Evaluator | None = None,
    ) -> None:
        inst = self.instances.get(fp)
        if inst is None:
            if not rule.firing_condition(value):
                return  # nothing to remember for a quiet series
            inst = self.instances[fp] = Instance(rule.name, dict(labels))
        inst.value = value
        if inst.state == "inactive":
            if rule.firing_condition(value):
                inst.state, inst.since = "pending", now
                self._transition(rule, inst, "pending", now)
                if rule.for_ <= 0:
                    self._fire(rule, inst, now)
            else:
                del self.instances[fp]
        elif inst.state == "pending":
            if not (rule.firing_condition(value) or self._in_band(rule, value, series, fit, now)):
                inst.state = "inactive"
                self._transition(rule, inst, "inactive", now)
                del self.instances[fp]
            elif now - inst.since >= rule.for_:
                self._fire(rule, inst, now)
        elif inst.state == "firing":
            if value is None and now - self.started < rule.expr.lookback():
                pass  # just started: no samples yet is not "resolved"
            elif not (rule.still_firing(value) or self._in_band(rule, value, series, fit, now)):
                inst.state, inst.resolved_at = "inactive", now
                self._transition(rule, inst, "resolved", now)
                self.notify(self._alert(rule, inst, "resolved", now), rule.notify)
                del self.instances[fp]
            elif rule.repeat > 0 and now - inst.last_notified >= rule.repeat:
                inst.last_notified = now
                self._dirty = True
                self.notify(self._alert(rule, inst, "firing", now, repeat=True), rule.notify)

    @staticmethod
    def _in_band(
        rule: Rule, value: float | None, series: Series | None, fit: Evaluator | None, now: float
    ) -> bool:
        """The forecast band, from the running fit's slope when it has one
        (the band's ends are on the same line), else fitted again."""
        if rule.band is None or value is None or series is None:
            return False
        slope = getattr(fit, "slope", None)
        if slope is not None:
            return rule.in_band_of(value, slope)
        return rule.in_band(series.ts, series.values, now)

    def _fire(self, rule: Rule, inst: Instance, now: float) -> None:
        inst.state, inst.fired_at, inst.last_notified = "firing", now, now
        self._transition(rule, inst, "firing", now)
        self.notify(self._alert(rule, inst, "firing", now), rule.notify)

    def _transition(self, rule: Rule, inst: Instance, state: str, now: float) -> None:
        self._dirty = True
        alert = self._alert(rule, inst, "resolved" if state == "resolved" else "firing", now)
        fields = {
            "rule": rule.name,
            "state": state,
            "labels": dict(alert.labels),
            "value": _finite(inst.value),
            "fingerprint": alert.fingerprint,
            "expr": rule.expr.text,
            "since": inst.since,
        }
        self.emit(
            Event("alert", now, f"{rule.name} {state}: {alert.summary}", rule.severity, fields)
        )
        log.info(
            "alert_transition",
            rule=rule.name,
            state=state,
            labels=dict(inst.labels),
            value=inst.value,
        )

    def _alert(
        self, rule: Rule, inst: Instance, state: str, now: float, repeat: bool = False
    ) -> Alert:
        labels = {**inst.labels, **rule.labels, "alertname": rule.name, "host": self.host}
        labels.setdefault("severity", rule.severity)
        value = inst.value if inst.value is not None else math.nan
        # the series' labels win over rule/severity ({rule} of log_matches_total)
        context: dict[str, Any] = {"host": self.host, "rule": rule.name, "severity": rule.severity}
        context.update(inst.labels)
        context["value"] = value
        context["duration"] = human_duration(value)  # a value in seconds, for people
        summary = (
            _SafeFormat().format(rule.summary, **context)
            if rule.summary
            else (f"{rule.name}: {rule.expr.text} (value {value:g})")
        )
        return Alert(
            rule=rule.name,
            state="resolved" if state == "resolved" else "firing",
            severity=rule.severity,
            labels=labels,
            summary=summary,
            value=value,
            starts_at=inst.fired_at or inst.since or now,
            ends_at=now if state == "resolved" else None,
            host=self.host,
            fingerprint=fingerprint(rule.name, inst.labels),
            repeat=repeat,
        )

    # -- for `vigil alerts` ------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        out = []
        for rule in self.rules:
            instances = [
                {
                    "labels": i.labels,
                    "state": i.state,
                    "since": i.since,
                    "fired_at": i.fired_at or None,
                    "value": _finite(i.value),
                }
                for i in self.instances.values()
                if i.rule == rule.name
            ]
            row = {
                "name": rule.name,
                "expr": rule.expr.text,
                "for": rule.for_,
                "severity": rule.severity,
                "instances": instances,
            }
            if rule.name in self.errors:
                row["error"] = self.errors[rule.name]
            out.append(row)
        return out

    def explain(self, rule: Rule, now: float) -> list[dict[str, Any]]:
        """Why each matching series would or would not fire, right now."""
        if isinstance(rule.expr, CompoundExpr):
            return self._explain_query(rule, now)
        store = self.series.get(rule.expr.selector.metric, {})
        out = []
        if rule.expr.func == "absent":
            present = [
                s.labels
                for s in store.values()
                if rule.expr.selector.matches(rule.expr.selector.metric, s.labels)
            ]
            return [
                {
                    "labels": {},
                    "value": 0.0 if present else 1.0,
                    "condition": not present,
                    "samples": len(present),
                }
            ]
        for series in store.values():
            if not rule.expr.selector.matches(rule.expr.selector.metric, series.labels):
                continue
            value = evaluate_arrays(rule.expr, series.ts, series.values, now)
            row: dict[str, Any] = {
                "labels": series.labels,
                "value": _finite(value),
                "condition": rule.firing_condition(value),
                "samples": len(series.ts),
            }
            cover = coverage(rule.expr, rule.min_coverage, MAX_SAMPLES)
            if cover is not None and rule.expr.window is not None:
                row["coverage"] = covered_fraction(series.ts, now, rule.expr.window)
                row["min_coverage"] = rule.min_coverage
                row["condition"] = row["condition"] and cover(series.ts, now)
            out.append(row)
        return out

    def _explain_query(self, rule: Rule, now: float) -> list[dict[str, Any]]:
        assert isinstance(rule.expr, CompoundExpr)
        source = functools.partial(self.vector, now=now)
        try:
            result = evaluate_query(rule.expr.query.node, source)
        except QueryError as exc:
            return [{"labels": {}, "value": None, "condition": False, "error": str(exc)}]
        assert isinstance(result, dict)
        return [
            {
                "labels": dict(key),
                "value": _finite(value),
                "condition": rule.firing_condition(None if math.isnan(value) else value),
            }
            for key, value in result.items()
        ]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def build_rule(
    name: str,
    expr: str,
    for_: float,
    clear: str,
    severity: str,
    labels: Mapping[str, str],
    summary: str,
    repeat: float,
    notify: Sequence[str],
    min_coverage: float = MIN_COVERAGE,
) -> Rule:
    """A Rule from config values; ExprError (with a column) if expr or clear is bad."""
    parsed = parse(expr)
    band = None
    if parsed.func == "predict_linear" and not clear and (parsed.arg or 0.0) > 0:
        ahead = parsed.arg or 0.0
        band = (
            evaluator(dataclasses.replace(parsed, arg=ahead * BAND[0])),
            evaluator(dataclasses.replace(parsed, arg=ahead * BAND[1])),
        )
    return Rule(
        name,
        parsed,
        for_,
        parse_clear(clear, parsed) if clear else None,
        severity,
        dict(labels),
        summary,
        repeat,
        tuple(notify),
        min_coverage,
        band,
    )
