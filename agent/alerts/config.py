"""`[[alerts]]` rules and the `[alerting]` table. Reference: docs/alerts.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.schema import Duration, Invalid, opt


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
