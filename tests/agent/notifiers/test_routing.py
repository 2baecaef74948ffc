"""Building notifiers from the config and routing an alert to them; adding
a type is one module that registers itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config
from agent.core.alert import Alert
from agent.core.schema import ConfigError, build, opt
from agent.notifiers.base import NOTIFIER_TYPES, Notifier, NotifierConfig
from agent.notifiers.routing import build_notifiers, route
from tests.agent.notifiers.common import cfg, make_alert


def test_build_always_has_the_journal_and_routes_by_name_and_severity(tmp_path):
    configs = [
        cfg(name="restart-app", type="exec", command=["true"]),
        cfg(name="pager", type="webhook", url="http://h/x", severities=["critical"]),
        cfg(
            name="log", type="file", path=str(tmp_path / "a.jsonl"), severities=["critical", "high"]
        ),
    ]
    built = build_notifiers(configs, tmp_path, "web-01")
    assert list(built) == ["journal", "restart-app", "pager", "log"]
    names = lambda alert, notify: [n.name for n in route(alert, notify, built)]  # noqa: E731
    assert names(make_alert(severity="low"), []) == ["journal"]
    assert names(make_alert(severity="low"), ["restart-app"]) == ["journal", "restart-app"]
    assert names(make_alert(severity="high"), ["restart-app", "log"]) == [
        "journal",
        "restart-app",
        "log",
    ]
    assert names(make_alert(severity="critical"), []) == ["journal", "pager", "log"]
    # a configured journal replaces the built-in one
    own = build_notifiers([cfg(name="journal", type="journal", resolved=False)], tmp_path, "h")
    assert list(own) == ["journal"] and own["journal"].config.resolved is False


def agent_config(*notifiers: dict[str, Any], notify: tuple[str, ...] = ()) -> Config:
    rule = {"name": "DiskFull", "expr": "disk_used_percent > 90", "notify": list(notify)}
    return build(Config, {"notifiers": list(notifiers), "alerts": [rule]}, "agent.toml")


def test_notifier_names_are_unique_and_journal_is_reserved():
    hook = {"name": "ops", "type": "webhook", "url": "http://h/x"}
    assert agent_config(hook, notify=("ops", "journal")).notifiers[0].name == "ops"
    with pytest.raises(ConfigError, match=r"notifiers\[1\]\.name: notifier name 'ops' is used"):
        agent_config(hook, hook)
    fake = {"name": "journal", "type": "file", "path": "/tmp/x"}
    with pytest.raises(ConfigError, match=r"notifiers\[0\]\.name: notifier name 'journal'"):
        agent_config(fake)
    unknown = r"alerts\[0\]\.notify\[0\]: rule 'DiskFull': no notifier"
    with pytest.raises(ConfigError, match=unknown):
        agent_config(hook, notify=("pager",))


# -- a type of our own, as a newcomer adds one (docs/development.md) ---------------------


@dataclass(frozen=True, kw_only=True)
class PagerConfig(NotifierConfig):
    channel: str = opt(check=lambda v: None if v.startswith("#") else "must start with #")


class PagerNotifier(Notifier[PagerConfig]):
    Config = PagerConfig

    def __init__(self, config: PagerConfig, state_dir: Path, host: str) -> None:
        super().__init__(config, state_dir, host)
        self.paged: list[tuple[str, str]] = []

    async def send(self, alert: Alert) -> None:
        if self.wants(alert):
            self.paged.append((self.config.channel, alert.rule))
            self.sent += 1


@pytest.fixture
def notifier_types():
    """NOTIFIER_TYPES, with whatever a test registers gone after it."""
    with NOTIFIER_TYPES.scope() as types:
        yield types


def test_a_registered_type_is_configured_built_and_routed(notifier_types, tmp_path):
    notifier_types.register("pager")(PagerNotifier)
    pager = {"name": "oncall", "type": "pager", "channel": "#ops", "resolved": False}
    config = agent_config(pager, notify=("oncall",))
    assert config.notifiers == (
        PagerConfig(name="oncall", type="pager", channel="#ops", resolved=False),
    )
    built = build_notifiers(config.notifiers, tmp_path, "web-01")
    oncall = built["oncall"]
    assert isinstance(oncall, PagerNotifier)

    async def main() -> None:
        for alert in (make_alert(rule="DiskFull"), make_alert("resolved", rule="DiskFull")):
            for n in route(alert, ["oncall"], built):
                await n.send(alert)

    asyncio.run(main())
    assert oncall.paged == [("#ops", "DiskFull")]  # resolved = false: the firing one only
    assert oncall.status()["type"] == "pager" and oncall.status()["sent"] == 1
    # its keys are its own: the schema checks them and names them for other types
    with pytest.raises(ConfigError) as err:
        agent_config({**pager, "channel": "ops", "url": "http://h"})
    assert [str(p) for p in err.value.problems] == [
        "agent.toml: notifiers[0].url: not used by type 'pager' (only by 'alertmanager', "
        "'webhook')",
        "agent.toml: notifiers[0].channel: must start with #",
    ]
    with pytest.raises(ConfigError, match="channel: not used by type 'exec' \\(only by 'pager'\\)"):
        agent_config({"name": "x", "type": "exec", "command": ["true"], "channel": "#ops"})
