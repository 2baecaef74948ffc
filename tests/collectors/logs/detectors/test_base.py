"""The detectors' one interface: the registry feeds the config, the tailer
runs whatever is registered and enabled, and the state the previous layout
saved restores."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

from agent.config import Config, load
from agent.core.checkpoint import CheckpointStore
from agent.core.schema import ConfigError
from collectors.logs.config import LogDetectorsConfig, LogsConfig
from collectors.logs.detectors.auth import AuthOptions
from collectors.logs.detectors.base import DETECTORS, Detector, Finding, build_all
from collectors.logs.tailer import LogCollector
from tests.collectors.logs.test_tailer import Committer, run, wait_until

OLD_STATE = Path(__file__).parents[3] / "fixtures" / "logstate"  # see its README.md


def config(text: str, where: Path) -> Config:
    path = where / "agent.toml"
    path.write_text(text)
    return load(path)


def problems(text: str, where: Path) -> list[str]:
    """`KEY PATH: MESSAGE` of each problem (all in the file `config` wrote)."""
    with pytest.raises(ConfigError) as err:
        config(text, where)
    assert {p.file for p in err.value.problems} == {str(where / "agent.toml")}
    return [f"{p.path}: {p.message}" for p in err.value.problems]


def test_the_registry_gives_the_names_and_the_default(tmp_path):
    assert list(DETECTORS) == ["auth", "volume", "new_errors"]
    assert LogsConfig(paths=("/x",)).detectors == ("auth", "volume", "new_errors")
    assert problems('[[logs]]\npaths = ["/x"]\ndetectors = ["auth", "nope"]\n', tmp_path) == [
        "logs[0].detectors[1]: expected one of auth, volume, new_errors"
    ]


def test_the_log_detectors_keys_stay_flat_and_belong_to_their_detector(tmp_path):
    cfg = config(
        '[log_detectors]\nauth_threshold = 3\nauth_window = "1m"\nvolume_factor = 5.0\n'
        'volume_min_lines = 10\nvolume_learn = "10m"\nmax_templates = 100\n',
        tmp_path,
    )
    options = cfg.log_detectors.options
    assert (options["auth"].auth_threshold, options["auth"].auth_window) == (3, 60.0)
    assert (options["volume"].volume_factor, options["volume"].volume_learn) == (5.0, 600.0)
    assert options["volume"].volume_min_lines == 10
    assert options["new_errors"].max_templates == 100
    assert config("", tmp_path).log_detectors.options["auth"] == AuthOptions()
    assert problems("[log_detectors]\nauth_threshold = 0\n", tmp_path) == [
        "log_detectors.auth_threshold: must be at least 1, got 0"
    ]
    (unknown,) = problems("[log_detectors]\nauth_treshold = 3\n", tmp_path)
    assert unknown.startswith(
        'log_detectors.auth_treshold: unknown key (did you mean "auth_threshold"?)'
    )


def test_state_saved_before_the_detectors_package_restores(tmp_path):
    """The layout is unchanged: `tail` keeps auth and volume under their
    names, `templates` is the signatures' own part; each restores whole."""
    shutil.copytree(OLD_STATE, tmp_path / "logs")
    store = CheckpointStore(tmp_path / "logs")
    tail, templates = store.load("tail", None), store.load("templates", None)
    states = {"auth": tail["auth"], "volume": tail["volume"], "new_errors": templates}
    detectors = build_all(states=states)
    saved = {name: d.snapshot() for name, d in detectors.items()}
    assert msgpack.unpackb(msgpack.packb(saved)) == states


def test_the_tailer_goes_on_from_state_saved_before(tmp_path):
    (tmp_path / "state").mkdir()
    shutil.copytree(OLD_STATE, tmp_path / "state" / "logs", ignore=shutil.ignore_patterns("*.md"))
    log = tmp_path / "auth.log"
    log.write_text(
        "Nov 27 09:00:00 web-01 sshd[201]: Failed password for root from 203.0.113.7 port 1 ssh2\n"
        "Nov 27 09:00:01 web-01 app[8]: ERROR disk full on /srv/other (errno 5)\n"  # known
        "Nov 27 09:00:02 web-01 app[8]: ERROR cannot open socket\n"  # new
    )
    table = LogsConfig(paths=(str(log),), start_at="beginning", default_rules=False)
    logs = LogCollector([table], LogDetectorsConfig(), tmp_path / "state")
    sink = Committer()

    async def scenario() -> dict[tuple[str, Any], float]:
        await logs.start(sink)
        await wait_until(lambda: len(sink.records) == 1 and logs.view["counters"])
        await logs.stop()
        return {(m.name, tuple(m.labels.items())): m.value for m in logs.collect(0.0, 0.0)}

    metrics = run(scenario())
    assert metrics[("auth_failures_total", (("remote", "203.0.113.7"),))] == 3  # 2 before
    assert metrics[("auth_failures_by_user_total", (("user", "oracle"),))] == 1
    (event,) = sink.records
    assert event["fields"]["detector"] == "new_error"
    assert event["fields"]["template"] == "app: ERROR cannot open socket"


@pytest.fixture
def toy():
    """A detector registered the way a new module would register one; the
    registry is put back afterwards."""
    with DETECTORS.scope():

        @dataclass(frozen=True, kw_only=True)
        class ToyOptions:
            toy_answer: str = "who's there?"

        @DETECTORS.register("toy")
        class Toy(Detector):
            Options = ToyOptions
            default_on = False
            takes = "lines"
            patterns = (r"knock knock",)

            def __init__(self, answer: str, knocks: int) -> None:
                self.answer, self.knocks = answer, knocks

            @classmethod
            def configured(cls, options: ToyOptions, state: Any) -> Toy:
                return cls(options.toy_answer, state["knocks"] if state else 0)

            def feed(
                self, line: str, file: str, now: float, rule: str | None = None
            ) -> list[Finding]:
                self.knocks += 1
                message = f"{self.answer} (knock {self.knocks} in {file})"
                return [Finding("toy", "low", message, {"knocks": self.knocks})]

            def snapshot(self) -> dict[str, Any]:
                return {"knocks": self.knocks}

        yield Toy


def test_a_detector_module_plugs_in_by_registering(toy, tmp_path):
    """Registered and listed in `detectors`: its key is in [log_detectors],
    the tailer feeds it the lines its pattern finds, its findings become
    events, and its state is kept across a restart."""
    cfg = config(
        '[log_detectors]\ntoy_answer = "Doctor who?"\n'
        f'[[logs]]\npaths = ["{tmp_path}/app.log"]\nstart_at = "beginning"\n'
        'detectors = ["toy"]\ndefault_rules = false\n',
        tmp_path,
    )
    assert cfg.logs[0].detectors == ("toy",)
    assert "toy" not in config(f'[[logs]]\npaths = ["{tmp_path}/x"]\n', tmp_path).logs[0].detectors
    log = tmp_path / "app.log"
    log.write_text("knock knock\nnothing here\n")
    sink = Committer()

    async def once(lines: int) -> None:
        logs = LogCollector(cfg.logs, cfg.log_detectors, tmp_path / "state")
        await logs.start(sink)
        await wait_until(lambda: len(sink.records) == lines)
        await logs.stop()

    run(once(1))
    with open(log, "a") as fh:
        fh.write("knock knock, again\n")
    run(once(2))
    assert [(r["type"], r["message"], r["fields"]) for r in sink.records] == [
        ("log", f"Doctor who? (knock 1 in {log})", {"detector": "toy", "knocks": 1}),
        ("log", f"Doctor who? (knock 2 in {log})", {"detector": "toy", "knocks": 2}),
    ]
    assert CheckpointStore(tmp_path / "state" / "logs").load("tail", None)["toy"] == {"knocks": 2}
