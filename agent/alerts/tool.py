"""`vigil alerts` without a running agent to ask: the saved state, and a
rule evaluated against a fresh collection."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from agent.alerts.engine import AlertEngine
from agent.alerts.service import build_rules, explanation
from agent.config import Config


def from_state(config: Config) -> dict[str, Any]:
    """Every rule, with the pending and firing instances the agent last saved."""
    rules = build_rules(config)
    engine = AlertEngine(
        rules,
        config.agent.host_id,
        config.agent.state_dir / "alerts.json",
        lambda alert, named: None,
        lambda event: None,
    )
    with contextlib.suppress(OSError):
        engine.load()
    return {
        "rules": engine.status(),
        "notifiers": {},
        "evaluations": None,
        "source": "saved state (no agent endpoint answered)",
    }


async def explain_once(config: Config, name: str) -> dict[str, Any] | None:
    from agent.runtime import collect_once

    rules = [r for r in build_rules(config) if r.name == name]
    if not rules:
        return None
    engine = AlertEngine(rules, config.agent.host_id, None, lambda a, n: None, lambda e: None)
    records, _errors = await collect_once(config, 1.0)
    now = time.time()
    engine.observe(records, now)
    rule = rules[0]
    return {
        **explanation(rule, engine.explain(rule, now)),
        "source": "one collection now (no agent endpoint answered): window functions "
        "see a single sample, and log and check metrics are not collected",
    }
