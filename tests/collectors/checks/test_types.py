"""A check type is one module: a `CheckConfig` subclass with its keys, its
checks and its probe, registered in CHECK_TYPES. This file adds a type of
its own, as a new module would, and follows it from the config to the
checks service; then it holds the built-in types to the same shape."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest

from agent.config import Config
from agent.core.records import CheckRun, Metric
from agent.core.schema import ConfigError, Invalid, build, opt
from collectors.checks.config import CHECK_TYPES, CheckConfig
from collectors.checks.model import Outcome, ProbeContext
from collectors.checks.service import STATE_FILE, Checks


@dataclass(frozen=True, kw_only=True)
class EchoCheck(CheckConfig):
    """Passes when `text` is not "down"; says `text`."""

    text: str = opt(check=lambda v: None if v else "must not be empty")
    shout: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shout and not self.text.isascii():
            raise Invalid("shout needs ASCII text", key="shout")

    async def probe(self, ctx: ProbeContext) -> Outcome:
        ok = self.text != "down"
        message = self.text.upper() if self.shout else self.text
        return Outcome(ok, "ok" if ok else "critical", message, 0.001)


@pytest.fixture
def echo() -> Iterator[type[EchoCheck]]:
    # For this test only: the other tests see the built-in types alone.
    with CHECK_TYPES.scope():
        CHECK_TYPES.register("echo")(EchoCheck)
        yield EchoCheck


def config(*checks: dict[str, object]) -> Config:
    return build(Config, {"checks": list(checks)}, "agent.toml")


def errors(*checks: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config(*checks)
    return [str(p) for p in err.value.problems]


def test_a_registered_type_is_accepted_by_the_config(echo: type[EchoCheck]) -> None:
    cfg = config({"name": "say", "type": "echo", "text": "hi", "interval": "5s"})
    assert cfg.checks == (EchoCheck(name="say", type="echo", text="hi", interval=5.0),)
    assert cfg.checks[0].timeout == 5.0  # the common keys keep their rules


def test_a_registered_type_validates_its_own_keys(echo: type[EchoCheck]) -> None:
    assert errors({"name": "say", "type": "echo"}) == [
        "agent.toml: checks[0].text: required: a string"
    ]
    assert errors({"name": "say", "type": "echo", "text": "é", "shout": True}) == [
        "agent.toml: checks[0].shout: shout needs ASCII text"
    ]
    assert errors({"name": "say", "type": "echo", "text": "hi", "url": "http://h/"}) == [
        "agent.toml: checks[0].url: not used by type 'echo' (only by 'http')"
    ]
    assert errors({"name": "web", "type": "http", "url": "http://h/", "text": "hi"}) == [
        "agent.toml: checks[0].text: not used by type 'http' (only by 'echo')"
    ]


def test_the_checks_service_runs_a_registered_type(echo: type[EchoCheck], tmp_path: Path) -> None:
    cfg = config(
        {"name": "up", "type": "echo", "text": "fine", "shout": True},
        {"name": "down", "type": "echo", "text": "down", "retries": 0},
    )
    checks = Checks(cfg.checks, tmp_path)
    checks.load()

    async def one_run() -> list[object]:
        return [r for c in checks.collectors() for r in await c.collect(time.time(), 0.0)]

    records = asyncio.run(one_run())
    runs = {r.name: r for r in records if isinstance(r, CheckRun)}
    assert (runs["up"].ok, runs["up"].message, runs["up"].type) == (True, "FINE", "echo")
    assert (runs["down"].ok, runs["down"].status) == (False, "critical")
    up = {
        (m.labels["check"], m.value)
        for m in records
        if isinstance(m, Metric) and m.name == "check_up"
    }
    assert up == {("up", 1.0), ("down", 0.0)}
    snapshot = checks.snapshot()
    assert snapshot is not None and snapshot[0] == tmp_path / STATE_FILE
    assert set(msgpack.unpackb(snapshot[1])) == {"up", "down"}


def test_every_built_in_type_is_one_frozen_class_with_its_probe() -> None:
    assert sorted(CHECK_TYPES) == ["command", "dns", "http", "tcp", "tls"]
    for name, cls in CHECK_TYPES.items():
        assert issubclass(cls, CheckConfig), name
        assert cls.probe is not CheckConfig.probe, f"{name} has no probe"
        assert cls.__dataclass_params__.frozen, name  # type: ignore[attr-defined]
        assert all(f.kw_only for f in dataclasses.fields(cls)), name
        assert cls.__module__ == f"collectors.checks.{name}", name
        # the common keys come from the base, not redefined per type
        own = {f.name for f in dataclasses.fields(cls)} - {
            f.name for f in dataclasses.fields(CheckConfig)
        }
        assert own, f"{name} has no keys of its own"


def test_loading_the_config_imports_no_http_or_certificate_library() -> None:
    """aiohttp and cryptography load when a check runs, not with the config."""
    code = (
        "import sys\n"
        "from agent.config import load\n"
        "import collectors.checks.service\n"
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'cryptography')))"
    )
    root = Path(__file__).parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.split() == []
