"""What every notifier shares: the common keys of a `[[notifiers]]` table,
the registry of types, the interface, and the counters behind the metrics.

A notifier type is one module: its config (a frozen kw_only subclass of
`NotifierConfig` holding only its own keys) and its class (a `Notifier`
subclass naming that config as `Config`), registered with
`@NOTIFIER_TYPES.register("name")`, plus its name in the lazy list of
`agent/notifiers/__init__.py`. The config schema offers the registered
types (agent/config.py) and routing builds them by name.

`send` never raises (an error is logged, counted and kept in
`status()["last_error"]`) and returns quickly. A notifier with
`resolved = false` skips resolutions itself, in `send` (see `wants`), so no
caller can forget it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import structlog

from agent.core.alert import SEVERITIES, Alert
from agent.core.records import Metric, Spec, counter, gauge
from agent.core.registry import Registry
from agent.core.schema import opt

log = structlog.get_logger()

STOP_GRACE = 2.0  # seconds stop() gives running work before cutting it off

# Not schema.check_identifier, nor the alert rules' rule: a notifier's name
# names its queue directory, so no ':' (kept out of paths), no leading '.'
# ("..") and at most 64 characters; it may start with a digit, as it always could.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SPECS: tuple[Spec, ...] = (
    counter("vigil_notifier_sent_total", "Notifications delivered, per notifier."),
    counter(
        "vigil_notifier_failed_total",
        "Failed runs (exec), writes (file) or delivery attempts (remote; retried).",
    ),
    counter("vigil_notifier_dropped_total", "Notifications given up: queue full, refused."),
    counter("vigil_notifier_rate_limited_total", "exec runs skipped over max_per_hour."),
    gauge("vigil_notifier_queued", "Notifications waiting: queued on disk, or exec runs waiting."),
)


def check_name(value: str) -> str | None:
    if not _NAME.match(value):
        return (
            "must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit "
            f"(it names the queue directory), got {value!r}"
        )
    return None


def _check_severity(value: str) -> str | None:
    if value not in SEVERITIES:
        return f"expected one of {', '.join(SEVERITIES)}, got {value!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class NotifierConfig:
    """The keys of every [[notifiers]] table. See docs/alerts.md, "Notifiers"."""

    name: str = opt(check=check_name)  # what rules' notify = [...] refer to
    type: str = opt()  # picks the config class among NOTIFIER_TYPES
    severities: tuple[str, ...] = opt((), each=_check_severity)  # also every alert of these
    resolved: bool = True  # also send resolutions


C = TypeVar("C", bound=NotifierConfig)


class Notifier(Generic[C]):
    """One configured notifier. Every type is built the same way,
    `cls(config, state_dir, host)`: `state_dir` is where it may keep state
    (remote ones queue under notify/NAME), `host` names this host for alerts
    that carry none. Not started until `start()`."""

    Config: ClassVar[type[NotifierConfig]]

    def __init__(self, config: C, state_dir: Path, host: str) -> None:
        self.name = config.name
        self.config = config
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error: str | None = None

    def wants(self, alert: Alert) -> bool:
        return alert.state == "firing" or self.config.resolved

    def queued(self) -> int:
        return 0

    async def start(self) -> None:
        pass

    async def send(self, alert: Alert) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {
            "type": self.config.type,
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": self.queued(),
            "last_error": self.last_error,
        }

    def _error(self, event: str, error: str, **fields: Any) -> None:
        self.last_error = error
        log.error(event, notifier=self.name, error=error, **fields)


NOTIFIER_TYPES: Registry[type[Notifier[Any]]] = Registry("notifier type", lambda cls: cls.Config)


def metrics(notifiers: Mapping[str, Notifier[Any]], ts: float) -> list[Metric]:
    """The SPECS metrics, labelled notifier=NAME and type=TYPE."""
    out: list[Metric] = []
    for name, n in notifiers.items():
        st = n.status()
        labels = {"notifier": name, "type": n.config.type}
        for key, metric in (
            ("sent", "vigil_notifier_sent_total"),
            ("failed", "vigil_notifier_failed_total"),
            ("dropped", "vigil_notifier_dropped_total"),
            ("rate_limited", "vigil_notifier_rate_limited_total"),
        ):
            if key in st:
                out.append(Metric(metric, st[key], ts, labels, "counter"))
        out.append(Metric("vigil_notifier_queued", st["queued"], ts, labels))
    return out
