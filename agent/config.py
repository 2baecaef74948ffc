"""The agent's configuration: TOML parsed once into frozen sections.

Every table is optional; `load(None)` gives the built-in defaults (host
metrics every 10 s, kept locally). See docs/configuration.md for every key.
Later features add their sections to `Config`.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from agent.alerts.config import AlertingSection, AlertRuleConfig
from agent.core import statedir
from agent.core.configfile import (
    Origins,
    check_listen,
    default_state_dir,
    listen_problem,
    load_config,
    remote_problem,
)
from agent.core.schema import (
    ConfigError,
    Duration,
    Invalid,
    OneOf,
    Problem,
    Size,
    check_host_id,
    check_http_url,
    did_you_mean,
    opt,
    plugin_options,
)
from agent.notifiers.base import NOTIFIER_TYPES, NotifierConfig
from collectors import HOST_COLLECTORS
from collectors.checks.config import CHECK_TYPES, CheckConfig
from collectors.logs.config import JournalConfig, LogDetectorsConfig, LogsConfig, base_dir
from collectors.processes import ProcessesConfig
from collectors.scrape import ScrapeConfig, TextfileSection
from collectors.statsd import StatsdSection

DEFAULT_CONFIG_PATH = Path("/etc/vigil/agent.toml")
# What the agent keeps in its state directory: check-config asks each is usable
STATE_FILES = ("agent.lock", "alerts.json", "alerts.series", "checks.sla")
STATE_DIRS = ("buffer", "logs", "deadletter", "notify")


def _check_enabled(names: tuple[str, ...]) -> str | None:
    unknown = [n for n in names if n not in HOST_COLLECTORS]
    if unknown:
        return f"unknown collector {unknown[0]!r}; known: {', '.join(HOST_COLLECTORS)}"
    return None


@dataclass(frozen=True)
class AgentSection:
    host_id: str = opt(factory=socket.gethostname, check=check_host_id)
    state_dir: Path = opt(factory=default_state_dir)
    interval: Duration = opt(10.0, min=0.05)
    # Each run starts up to this much after its slot, at random. Off by
    # default: collectors that share an interval then wake the process once.
    jitter: Duration = 0.0
    collect_timeout: Duration | None = opt(None, min=0.01)  # default: the interval
    stop_timeout: Duration = opt(10.0, min=0.1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    # Also send metrics renamed to Prometheus' conventions under their old
    # names (agent/core/records.py RENAMED), for one release.
    legacy_metric_names: bool = False


@dataclass(frozen=True)
class HostSection:
    enabled: tuple[str, ...] = opt(tuple(HOST_COLLECTORS), check=_check_enabled)
    interval: Duration | None = opt(None, min=0.05)  # default: [agent] interval
    # Where the host's procfs and sysfs are: "/host/proc" when the agent runs in
    # a container with the host's mounted there.
    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    # [host.NAME] tables: each collector's Options, by name (disk, network...)
    options: Mapping[str, Any] = plugin_options(HOST_COLLECTORS)


@dataclass(frozen=True)
class ApiSection:
    listen: str | None = opt(None, check=check_listen)
    allow_remote: bool = False  # listening beyond loopback must be asked for

    def __post_init__(self) -> None:
        if problem := remote_problem(
            self.listen, self.allow_remote, "expose the endpoint beyond this host"
        ):
            raise Invalid(problem, key="listen")


@dataclass(frozen=True)
class HubSection:
    """Where to push. Without a [hub] table the agent keeps everything local."""

    url: str | None = opt(None, check=check_http_url)
    # Several hubs on one shared store (docs/hub.md): the first that answers
    # takes the batches; the agent moves on after a failure.
    urls: tuple[str, ...] = opt((), each=check_http_url)
    failback_after: Duration = opt(300.0, min=1.0)  # on another hub, then try the first again
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None  # trust this CA instead of the system's, for https
    timeout: Duration = opt(10.0, min=0.1)  # one request
    max_backoff: Duration = opt(60.0, min=0.1)  # between retries while the hub is away

    def __post_init__(self) -> None:
        if self.url and self.urls:
            raise Invalid("set url or urls, not both", key="urls")
        if len(set(self.urls)) != len(self.urls):
            raise Invalid("a hub is listed twice", key="urls")
        if self.targets and not (self.token or self.token_file):
            raise Invalid("a hub url needs token or token_file", key="token")
        if self.token and self.token_file:
            raise Invalid("set token or token_file, not both", key="token_file")
        if self.token is not None and not _one_token(self.token):
            raise Invalid(
                "expected the one line that `vigil hub token HOST` prints, with no spaces",
                key="token",
            )

    @property
    def targets(self) -> tuple[str, ...]:
        """The hubs to send to, in order of preference (none: local only)."""
        return (self.url,) if self.url else self.urls

    def read_token(self) -> str:
        """The token, from token_file when set (read again on each call:
        SIGHUP). OSError if unreadable or not one token: a token with a
        line break or a space could never be sent as a header."""
        if self.token_file is None:
            assert self.token is not None
            return self.token
        try:
            token = self.token_file.read_text().strip()
        except UnicodeDecodeError as exc:
            raise OSError(f"{self.token_file} is not text ({exc.reason})") from exc
        if not _one_token(token):
            lines = len(token.splitlines())
            raise OSError(
                f"{self.token_file} does not hold one token ({lines} lines): expected the one"
                " line that `vigil hub token HOST` prints"
            )
        return token


def _one_token(token: str) -> bool:
    """A token can go in a header: not empty, no space, no control character."""
    return bool(token) and not any(c.isspace() or not c.isprintable() for c in token)


def token_host_problem(token: str, host_id: str) -> str | None:
    """Why the hub would refuse `token` from `host_id`, when the token says
    so itself: it is HOST.MAC (hub/auth.py) and HOST is another host."""
    host, dot, mac = token.rpartition(".")
    if not dot or len(mac) != 64 or any(c not in "0123456789abcdef" for c in mac):
        return "not a token `vigil hub token HOST` prints (HOST.MAC): the hub would refuse it"
    if host != host_id:
        return (
            f"this token is for host {host!r}, not {host_id!r} ([agent] host_id): the hub"
            f" would refuse it; `vigil hub token {host_id}` on the hub prints this host's"
        )
    return None


@dataclass(frozen=True)
class BufferSection:
    max_bytes: Size = opt(256 << 20, min=1 << 20)
    fsync: Literal["batch", "interval"] = "batch"
    fsync_interval: Duration = opt(1.0, min=0.01)
    # A batch is written to the buffer (and so can be sent) when it is this
    # old, this many records or this many bytes, whichever comes first.
    flush_interval: Duration = opt(1.0, min=0.01)
    batch_records: int = opt(1000, min=1)
    batch_bytes: Size = opt(1 << 20, min=1024)


@dataclass(frozen=True)
class Config:
    agent: AgentSection = field(default_factory=AgentSection)
    host: HostSection = field(default_factory=HostSection)
    hub: HubSection = field(default_factory=HubSection)
    buffer: BufferSection = field(default_factory=BufferSection)
    api: ApiSection = field(default_factory=ApiSection)
    logs: tuple[LogsConfig, ...] = ()
    journal: tuple[JournalConfig, ...] = ()  # the systemd journal, resumed by cursor
    log_detectors: LogDetectorsConfig = field(default_factory=LogDetectorsConfig)
    alerts: tuple[AlertRuleConfig, ...] = ()
    alerting: AlertingSection = field(default_factory=AlertingSection)
    notifiers: tuple[Annotated[NotifierConfig, OneOf(NOTIFIER_TYPES)], ...] = ()
    checks: tuple[Annotated[CheckConfig, OneOf(CHECK_TYPES)], ...] = ()
    scrape: tuple[ScrapeConfig, ...] = ()  # local Prometheus endpoints (collectors/scrape.py)
    textfile: TextfileSection = field(default_factory=TextfileSection)
    processes: tuple[ProcessesConfig, ...] = ()  # named process groups (collectors/processes.py)
    statsd: StatsdSection = field(default_factory=StatsdSection)  # a StatsD server on UDP
    # Where this came from; not a TOML key.
    source: str = field(default="(built-in defaults)", init=False, compare=False)
    origins: Origins = field(default_factory=Origins, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        Invalid.raise_all(
            _jitter_check(self)
            + _names_check(self.notifiers, self.alerts)
            + _disable_check(self.alerting.disable)
            + _renamed_check(self)
            + _unique("checks", [c.name for c in self.checks], "check")
            + _unique("scrape", [s.name for s in self.scrape])
            + _scrape_timeouts(self)
            + _unique("processes", [g.name for g in self.processes])
        )

    @staticmethod
    def partial_checks(values: dict[str, Any], failed: set[str]) -> list[Invalid]:
        """The cross-checks that can be made while another part of the file
        has errors: reported with those, so one run shows everything."""
        out: list[Invalid] = []
        if not {"notifiers", "alerts"} & failed:
            out += _names_check(values.get("notifiers", ()), values.get("alerts", ()))
        if "alerting" not in failed and "alerting" in values:
            out += _disable_check(values["alerting"].disable)
        if "checks" not in failed:
            out += _unique("checks", [c.name for c in values.get("checks", ())], "check")
        return out

    def interval_for(self, collector: str) -> float:
        if collector in HOST_COLLECTORS and self.host.interval is not None:
            return self.host.interval
        return self.agent.interval


def _jitter_check(config: Config) -> list[Invalid]:
    """A jitter as long as an interval makes runs overlap the next slot."""
    shortest = min(config.agent.interval, config.host.interval or config.agent.interval)
    if config.agent.jitter >= shortest:
        message = f"must be shorter than the interval ({shortest:g}s): runs would miss their slot"
        return [Invalid(message, key="agent.jitter")]
    return []


def _names_check(
    notifiers: Sequence[NotifierConfig], alerts: Sequence[AlertRuleConfig]
) -> list[Invalid]:
    """Notifier and rule names used twice; every name a rule's `notify`
    gives that no notifier has, each with the closest defined name."""
    out = []
    known = {"journal"} | {n.name for n in notifiers}
    names = [n.name for n in notifiers]
    for i, name in enumerate(names):
        if name in names[:i]:
            first = f"notifiers[{names.index(name)}]"
            message = f"notifier name {name!r} is used twice (first by {first})"
            out.append(Invalid(message, key=f"notifiers[{i}].name"))
        elif name == "journal" and notifiers[i].type != "journal":
            message = "notifier name 'journal' is the journal's own: give this one another name"
            out.append(Invalid(message, key=f"notifiers[{i}].name"))
    rule_names = [r.name for r in alerts]
    for i, rule in enumerate(alerts):
        if rule.name in rule_names[:i]:
            first = f"alerts[{rule_names.index(rule.name)}]"
            message = f"rule name {rule.name!r} is used twice (first by {first})"
            out.append(Invalid(message, key=f"alerts[{i}].name"))
        for j, name in enumerate(rule.notify):
            if name not in known:
                out.append(
                    Invalid(
                        f"rule {rule.name!r}: no notifier named {name!r}"
                        f"{did_you_mean(name, known)}; defined: {', '.join(sorted(known))}",
                        key=f"alerts[{i}].notify[{j}]",
                    )
                )
    return out


def _disable_check(disable: Sequence[str]) -> list[Invalid]:
    from agent.alerts.defaults import DEFAULT_ALERTS

    defaults = sorted(r.name for r in DEFAULT_ALERTS)
    return [
        Invalid(
            f"{name!r} is not a default rule{did_you_mean(name, defaults)}; "
            f"the default rules: {', '.join(defaults)}",
            key=f"alerting.disable[{i}]",
        )
        for i, name in enumerate(disable)
        if name not in defaults
    ]


def _renamed_check(config: Config) -> list[Invalid]:
    if config.agent.legacy_metric_names:
        return []
    out = []
    for i, rule in enumerate(config.alerts):
        renamed = _renamed_metric(rule.expr)
        if renamed:
            out.append(Invalid(f"rule {rule.name!r}: {renamed}", key=f"alerts[{i}].expr"))
    return out


def _scrape_timeouts(config: Config) -> list[Invalid]:
    """A scrape's timeout within its interval, the [agent] one if it has none."""
    out = []
    for i, scrape in enumerate(config.scrape):
        interval = scrape.interval or config.agent.interval
        if scrape.timeout is not None and scrape.timeout > interval:
            message = f"timeout ({scrape.timeout:g}s) must not exceed the interval ({interval:g}s)"
            out.append(Invalid(message, key=f"scrape[{i}].timeout"))
    return out


def _unique(table: str, names: list[str], what: str = "") -> list[Invalid]:
    """A name used twice in an array of tables, named at its second use
    (`what`: the thing a table is, in the message; the table's name)."""
    return [
        Invalid(
            f"{what or table} name {name!r} is used twice (first by {table}[{names.index(name)}])",
            key=f"{table}[{i}].name",
        )
        for i, name in enumerate(names)
        if name in names[:i]
    ]


def _renamed_metric(expr: str) -> str | None:
    """What to say of a rule on a metric that was renamed, if it is one."""
    from agent.alerts.query import parse
    from agent.core.records import RENAMED

    metrics = {leaf.selector.metric for leaf in parse(expr).leaves()}  # valid: parsed before
    for new, old in RENAMED.items():
        if old.old in metrics:
            return (
                f"{old.old} was renamed {new} ({old.change}); change the rule, "
                "or set [agent] legacy_metric_names = true for this release"
            )
    return None


def load(path: str | os.PathLike[str] | None) -> Config:
    """The agent's config: `path`, else /etc/vigil/agent.toml if it exists, else the defaults."""
    return load_config(Config, path, DEFAULT_CONFIG_PATH)


def read_files(config: Config) -> list[Problem]:
    """What `vigil run` needs from the files and directories the config
    names, read as it reads them at start. ConfigError with a line for each
    it could not use (all at once, each naming file and key); else the
    warnings: what is legal but will not work as it stands. `vigil
    check-config` and `vigil run` both call it, so neither accepts what the
    other refuses."""
    from agent.core.http import tls_context

    errors: list[Problem] = []
    warnings: list[Problem] = []

    def error(key: str, message: str) -> None:
        errors.append(Problem(config.origins.file_of(key), key, message))

    def warning(key: str, message: str) -> None:
        warnings.append(Problem(config.origins.file_of(key), key, message))

    def unusable(exc: OSError) -> str:
        if isinstance(exc, ssl.SSLError):
            return f"not a PEM certificate bundle ({exc.reason or exc})"
        return f"cannot read: {exc.strerror or exc}"

    def ca_problem(ca_file: object) -> str | None:
        """Why the agent cannot load this CA bundle, loaded as it loads it."""
        try:
            tls_context(ca_file=str(ca_file))
        except OSError as exc:
            return unusable(exc)
        return None

    if problem := statedir.problem(config.agent.state_dir, "state", STATE_FILES, STATE_DIRS):
        error("agent.state_dir", problem)
    if config.hub.targets:
        key = "hub.token_file" if config.hub.token_file is not None else "hub.token"
        try:
            token = config.hub.read_token()
        except OSError as exc:
            error(key, unusable(exc))
        else:
            if problem := token_host_problem(token, config.agent.host_id):
                error(key, problem)
    if config.api.listen and (problem := listen_problem(config.api.listen)):
        error("api.listen", problem)
    if config.statsd.listen and (problem := listen_problem(config.statsd.listen)):
        error("statsd.listen", problem)
    if config.hub.ca_file is not None and (problem := ca_problem(config.hub.ca_file)):
        error("hub.ca_file", problem)
    for i, notifier in enumerate(config.notifiers):
        ca_file = getattr(notifier, "ca_file", None)
        if ca_file and (problem := ca_problem(ca_file)):
            error(f"notifiers[{i}].ca_file", problem)
    for i, check in enumerate(config.checks):
        ca_file = getattr(check, "ca_file", "")
        if ca_file and _reads_ca_file(check) and (problem := ca_problem(ca_file)):
            warning(f"checks[{i}].ca_file", f"{problem}; the check fails until it is fixed")
    for kind, entries in (("notifiers", config.notifiers), ("checks", config.checks)):
        for i, entry in enumerate(entries):  # exec notifiers, command checks
            command = getattr(entry, "command", ())
            if command and shutil.which(command[0]) is None:
                where = "on PATH" if os.sep not in command[0] else "as an executable file"
                warning(
                    f"{kind}[{i}].command",
                    f"{command[0]} is not found {where}; it fails until it is there",
                )
    directory = config.textfile.directory
    if directory is not None and not directory.is_dir():
        warning("textfile.directory", f"no such directory {directory}; read once it appears")
    for i, journal in enumerate(config.journal):
        if journal.directory is not None and not journal.directory.is_dir():
            warning(f"journal[{i}].directory", f"no such directory {journal.directory}")
    for i, table in enumerate(config.logs):
        for j, pattern in enumerate(table.paths):
            if problem := _follows_nothing(table, pattern):
                warning(f"logs[{i}].paths[{j}]", problem)
    if errors:
        raise ConfigError(errors)
    return warnings


def _follows_nothing(table: LogsConfig, pattern: str) -> str | None:
    """Why `pattern` gives the table no file to follow now, as the tailer
    looks: regular files (links followed) that `exclude` does not leave out."""
    import glob

    matches = glob.glob(pattern, recursive=True)
    if any(os.path.isfile(path) and not table.excludes(path) for path in matches):
        return None
    if matches:
        n = f"{len(matches)} path{'s' if len(matches) > 1 else ''}"
        reads = "none a file this table reads (not excluded, not a directory)"
        return f"matches {n}, {reads}; a file it matches later is followed"
    directory = Path(base_dir(pattern))
    try:
        if not directory.is_dir():
            return f"no such directory {directory}; followed once it appears"
    except OSError as exc:  # a directory this user may not enter
        return f"cannot look into {directory}: {exc.strerror or exc}; followed once it appears"
    return "no file matches it yet; followed once it appears"


def _reads_ca_file(check: CheckConfig) -> bool:
    """Whether the check's probe loads its ca_file: only when it verifies
    a TLS handshake (https, `tls = true`, the tls type)."""
    if not getattr(check, "verify_tls", True):
        return False
    if check.type == "http":
        return str(getattr(check, "url", "")).startswith("https://")
    if check.type == "tcp":
        return bool(getattr(check, "tls", False))
    return True
