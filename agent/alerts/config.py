"""`[[alerts]]` rules and the `[alerting]` table. Reference: docs/alerts.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.core.schema import Duration, Invalid, opt


def _check_fraction(value: float) -> str | None:
    if 0.0 <= value < 1.0:
        return None
    return "must be at least 0 and below 1 (the samples in a window never span all of it)"


def _check_name(value: str) -> str | None:
    if not value or not all(c.isalnum() or c in "_-:." for c in value):
        return "must be letters, digits and _ - : . only"
    return None


@dataclass(frozen=True)
class AlertRuleConfig:
    name: str = opt(check=_check_name)
    expr: str = opt()
    for_: Duration = opt(0.0, min=0.0)  # TOML key `for`
    clear: str = ""  # hysteresis: e.g. "< 70" for an expr "... > 80"
    severity: Literal["critical", "high", "medium", "low"] = "medium"
    labels: dict[str, str] = field(default_factory=dict)
    summary: str = ""  # "{value:.0f}% on {host}", labels by name: "{mount} is full"
    repeat: Duration = opt(4 * 3600.0, min=0.0)  # notify again while firing; 0: never
    notify: tuple[str, ...] = ()  # notifier names, on top of routing by severity
    # share of a window rule's window its samples must span before it is
    # evaluated; unset: [alerting] min_coverage
    min_coverage: float | None = opt(None, check=_check_fraction)

    def __post_init__(self) -> None:
        from agent.alerts.engine import build_rule
        from agent.alerts.expr import ExprError

        try:
            build_rule(self.name, self.expr, self.for_, "", self.severity, {}, "", 0.0, ())
        except ExprError as exc:
            raise Invalid(f"rule {self.name!r}: {exc.pretty()}", key="expr") from None
        if self.clear:
            try:
                build_rule(
                    self.name, self.expr, self.for_, self.clear, self.severity, {}, "", 0.0, ()
                )
            except ExprError as exc:
                raise Invalid(f"rule {self.name!r}: {exc.pretty()}", key="clear") from None


@dataclass(frozen=True)
class AlertingSection:
    """`[alerting]`: the shipped rules and how often everything is re-evaluated."""

    default_rules: bool = True
    disable: tuple[str, ...] = ()  # names of default rules to switch off
    # Rules are evaluated as samples arrive; this tick also advances `for`
    # timers, resolves stale series and checks absent() rules.
    evaluate_every: Duration = opt(5.0, min=0.1)
    # window rules wait until their samples span this share of the window
    min_coverage: float = opt(0.5, check=_check_fraction)
