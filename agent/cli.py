"""The `vigil` command. Exit codes: 0 success, 1 failure at run time
(agent unreachable, state directory taken), 2 usage or configuration error,
with one line per problem on stderr naming the file and key path."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agent import __version__
from agent.core.configfile import split_host_port
from agent.core.schema import ConfigError, Invalid, parse_duration

if TYPE_CHECKING:
    from agent.config import Config
    from agent.core.configfile import Origins
    from agent.core.schema import Problem
    from collectors.checks.config import CheckConfig

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agent.core import logsetup

    # A command's stdout is its answer (a token, a table): what it logs goes
    # to stderr. The daemons (`run`, `hub run`) log to stdout as they start.
    logsetup.configure("warning", "console", stream=sys.stderr)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"vigil: {problem}", file=sys.stderr)
        if hint := _wrong_kind_hint(args):
            print(f"vigil: hint: {hint}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _load(path: str | None) -> Config:
    """The agent's config. Imported here, not at the top: `vigil hub ...`
    must not load the agent's collectors and alert engine."""
    from agent import config

    return config.load(path)


def _wrong_kind_hint(args: argparse.Namespace) -> str | None:
    """When an agent command was given a hub config, or the other way
    round, the problems are every hub key: say which command fits."""
    from agent.core.configfile import read_toml

    path = getattr(args, "config", None)
    try:
        data = read_toml(path) if path else None
    except ConfigError:
        return None
    if not isinstance(data, dict):
        return None
    hub = data.get("hub")
    hub_keys = set(hub) if isinstance(hub, dict) else set()
    is_hub_command = getattr(args, "command", None) == "hub"
    if not is_hub_command and hub_keys & {"listen", "data_dir"}:
        return "this looks like a hub config: use vigil hub check-config (or vigil hub run)"
    if is_hub_command and (hub_keys & {"url", "urls", "token", "token_file"} or "agent" in data):
        return "this looks like an agent config: use vigil check-config (or vigil run)"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="vigil monitoring agent")
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: object, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", metavar="FILE", help="default: /etc/vigil/agent.toml if present")
        p.set_defaults(func=func)
        return p

    command("run", cmd_run, "run the agent daemon")
    once = command("once", cmd_once, "collect once and print the metrics")
    once.add_argument("--json", action="store_true", help="one JSON record per line")
    once.add_argument(
        "--window",
        default="1s",
        metavar="DURATION",
        help="time between the two samples that rates and CPU shares need (default 1s)",
    )
    check = command(
        "check-config",
        cmd_check_config,
        "validate the configuration, its drop-in files and the files it names, and exit",
    )
    check.add_argument(
        "--show", action="store_true", help="print the merged configuration, each value's file"
    )
    status = command("status", cmd_status, "show the running agent's state")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    alerts = command("alerts", cmd_alerts, "list alert rules and their state; test one")
    alerts.add_argument("action", nargs="?", choices=["list", "test"], default="list")
    alerts.add_argument("rule", nargs="?", metavar="RULE", help="for test: the rule's name")
    alerts.add_argument("--json", action="store_true", help="print the raw JSON")
    checks = command("checks", cmd_checks, "list synthetic checks and their state; run one")
    checks.add_argument("action", nargs="?", choices=["list", "run"], default="list")
    checks.add_argument("check", nargs="?", metavar="NAME", help="for run: the check's name")
    checks.add_argument("--json", action="store_true", help="print the raw JSON")
    buffer = command("buffer", cmd_buffer, "look into the on-disk buffer")
    buffer.add_argument("action", choices=["inspect", "verify", "repair"])
    hub = sub.add_parser("hub", help="the central collector", description="the central collector")
    hub_sub = hub.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")
    hub_run = hub_sub.add_parser("run", help="run the hub", description="run the hub")
    hub_run.set_defaults(func=cmd_hub_run)
    hub_token = hub_sub.add_parser("token", help="print a host's ingest token")
    hub_token.add_argument("host", metavar="HOST")
    hub_token.set_defaults(func=cmd_hub_token)
    hub_hosts = hub_sub.add_parser("hosts", help="the fleet: status, last seen, alerts")
    hub_hosts.add_argument("--json", action="store_true", help="print JSON")
    hub_hosts.set_defaults(func=cmd_hub_hosts)
    flags = []
    for flag, text in (
        ("retire", "stop showing HOST as silent and alerting on it"),
        ("revoke", "refuse HOST's token (401) from now on"),
    ):
        p = hub_sub.add_parser(flag, help=text, description=text)
        p.add_argument("host", metavar="HOST")
        p.add_argument("--undo", action="store_true", help="take it back")
        p.set_defaults(func=cmd_hub_flag, flag=flag + "d")
        flags.append(p)
    hub_check = hub_sub.add_parser(
        "check-config",
        help="validate the hub's configuration and exit",
        description="validate the hub's configuration, its drop-in files and the files it names,"
        " and exit",
    )
    hub_check.add_argument(
        "--show", action="store_true", help="print the merged configuration, each value's file"
    )
    hub_check.set_defaults(func=cmd_hub_check_config)
    hub_report = hub_sub.add_parser(
        "report",
        help="the daily operations report",
        description="the daily operations report (docs/hub.md, Reports)",
    )
    hub_report.add_argument("kind", choices=["daily"], help="which report")
    hub_report.add_argument(
        "--date", metavar="YYYY-MM-DD", help="default: yesterday in [hub.reports] timezone"
    )
    hub_report.add_argument("--format", choices=["md", "json", "html"], default="md")
    hub_report.set_defaults(func=cmd_hub_report)
    for p in (hub_run, hub_token, hub_check, hub_hosts, hub_report, *flags):
        p.add_argument("--config", metavar="FILE", help="default: /etc/vigil/hub.toml if present")
    return parser


def _load_for_run(path: str | None) -> tuple[Config, list[Problem]]:
    """The config as `vigil run` uses it: its file, then the files and
    directories it names (ConfigError for either); and the warnings.
    check-config and run both load through here."""
    from agent.runtime import load_for_run

    return load_for_run(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg, warnings = _load_for_run(args.config)
    for warning in warnings:
        print(f"vigil: warning: {warning}", file=sys.stderr)
    _print_ok(cfg.origins, args.show)
    return EXIT_OK


def _print_ok(origins: Origins, show: bool) -> None:
    """check-config's answer: each file read, or with --show the merged
    configuration as TOML (stdout holds nothing else, to save it)."""
    from agent.core.configfile import show as merged

    if show:
        sys.stdout.write(merged(origins))
        return
    for file in origins.files or [origins.main]:
        print(f"{file}: ok")


def cmd_run(args: argparse.Namespace) -> int:
    cfg, warnings = _load_for_run(args.config)
    from agent.core import logsetup, statedir
    from agent.runtime import Agent, log_warnings

    logsetup.configure(cfg.agent.log_level, cfg.agent.log_format)
    log_warnings(warnings)  # once at start
    agent = Agent(cfg, args.config)
    try:
        agent.prepare()
    except statedir.StateDirError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # the token was read by _load_for_run: the lock, or a race
        print(f"vigil: {cfg.source}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    code = _run_loop(agent.run())
    if agent.stuck_threads:
        # A collector thread blocked in the kernel would hold up interpreter
        # exit past systemd's stop timeout; everything else is already closed.
        sys.stdout.flush()
        os._exit(code)
    return code


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def cmd_once(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    try:
        window = parse_duration(args.window)
    except Invalid as exc:
        print(f"vigil: --window: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from agent import output
    from agent.runtime import collect_once

    _quiet_logs()
    records, errors = _run_loop(collect_once(cfg, window))
    sys.stdout.write(output.json_lines(records) if args.json else output.metrics_table(records))
    for name, error in errors.items():
        print(f"vigil: collector {name} failed: {error}", file=sys.stderr)
    if errors:
        # A timed-out collector's thread may still be blocked and would hold up exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FAILURE)
    return EXIT_OK


def cmd_buffer(args: argparse.Namespace) -> int:
    from agent import buffertool

    cfg = _load(args.config)
    directory = buffertool.buffer_dir(cfg.agent.state_dir)
    if args.action == "inspect":
        text, code = buffertool.inspect(directory)
    elif args.action == "verify":
        text, code = buffertool.verify(directory)
    else:
        text, code = buffertool.repair(directory, cfg.agent.state_dir)
    refused = code != 0 and args.action == "repair"
    (sys.stderr if refused else sys.stdout).write(text)
    return code


# The hub is imported only by these commands: the agent itself never loads it.
def cmd_hub_run(args: argparse.Namespace) -> int:
    from agent.core import logsetup
    from hub.reload import load_for_run
    from hub.server import serve

    # ConfigError (exit 2): the file, or a file or directory it names, with
    # the lines `vigil hub check-config` prints for it
    cfg, _ = load_for_run(args.config)
    logsetup.configure("info", "auto")
    try:
        return _run_loop(serve(cfg, args.config))
    except (OSError, ValueError) as exc:  # at run time: the port taken, the database down
        print(f"vigil: hub: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_hub_check_config(args: argparse.Namespace) -> int:
    """As `vigil check-config`, for the hub: every problem on its own line
    (the schema's, then the files and the directory the config names),
    exit 2 if any: as `vigil hub run` would refuse to start, with the same
    lines. Creates nothing."""
    from hub.reload import load_for_run

    cfg, _ = load_for_run(args.config)  # ConfigError: one line per problem
    _print_ok(cfg.origins, args.show)
    return EXIT_OK


def cmd_hub_token(args: argparse.Namespace) -> int:
    from agent.core.schema import check_host_id
    from hub import config as hub_config
    from hub.auth import host_token, load_secret

    if problem := check_host_id(args.host):
        print(f"vigil: hub token: host id {args.host!r} {problem}", file=sys.stderr)
        return EXIT_USAGE
    from hub.datadir import prepare

    cfg = hub_config.load(args.config)
    try:
        if cfg.hub.secret_file is None:
            prepare(cfg.hub.data_dir)  # the secret is made there: private from the start
        print(host_token(args.host, load_secret(cfg)))
    except (OSError, ValueError) as exc:
        print(f"vigil: hub: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_hub_hosts(args: argparse.Namespace) -> int:
    import time

    from hub import config as hub_config
    from hub import tool

    cfg = hub_config.load(args.config)
    try:
        rows = tool.hosts(cfg)
    except (OSError, ValueError) as exc:
        print(f"vigil: hub: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.write(tool.to_json(rows) if args.json else tool.hosts_text(rows, time.time()))
    return EXIT_OK


def cmd_hub_report(args: argparse.Namespace) -> int:
    from hub import config as hub_config
    from hub import tool
    from hub.reports.days import BadDate

    cfg = hub_config.load(args.config)
    try:
        text = tool.report(cfg, args.date, args.format)
    except BadDate as exc:
        print(f"vigil: hub report: --date: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"vigil: hub report: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.write(text)
    return EXIT_OK


def cmd_hub_flag(args: argparse.Namespace) -> int:
    from agent.core.schema import check_host_id
    from hub import config as hub_config
    from hub import tool

    if problem := check_host_id(args.host):
        print(f"vigil: hub: host id {args.host!r} {problem}", file=sys.stderr)
        return EXIT_USAGE
    cfg = hub_config.load(args.config)
    try:
        tool.set_flag(cfg, args.host, args.flag, not args.undo)
    except (OSError, ValueError) as exc:
        print(f"vigil: hub: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    done = ("no longer " if args.undo else "") + args.flag
    print(f"{args.host}: {done}")
    return EXIT_OK


def _endpoint(cfg: Config, path: str) -> str | None:
    if not cfg.api.listen:
        return None
    host, port = split_host_port(cfg.api.listen)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"


class NotFound(Exception):
    """The agent's endpoint answered 404."""


def _ask(url: str) -> Any:
    """JSON from the running agent's endpoint; OSError if none answers."""
    import urllib.error  # only the commands that ask pay for http.client
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFound(url) from None
        raise


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    url = _endpoint(cfg, "/status")
    if url is None:
        print(
            f"vigil: {cfg.source}: api.listen is not set, so the agent has no local endpoint "
            'to ask; set [api] listen = "127.0.0.1:8651"',
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        status = _ask(url)
    except (OSError, ValueError) as exc:
        print(f"vigil: no agent answering at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    from agent import output

    sys.stdout.write(
        json.dumps(status, indent=2) + "\n" if args.json else output.status_text(status)
    )
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    """The running agent's rules and instances (its endpoint, else its saved
    state); `test RULE` evaluates one rule now and says why it would or
    would not fire (with the agent's samples, else two fresh collections)."""
    from agent import output
    from agent.alerts import tool

    cfg = _load(args.config)
    if args.action == "test":
        if not args.rule:
            print("vigil: alerts test needs a RULE name", file=sys.stderr)
            return EXIT_USAGE
        url = _endpoint(cfg, f"/alerts/test?rule={urllib.parse.quote(args.rule)}")
        try:
            result = _ask(url) if url else None
        except NotFound:
            print(f"vigil: no rule named {args.rule!r}", file=sys.stderr)
            return EXIT_USAGE
        except (OSError, ValueError):  # urllib's errors are OSErrors
            result = None
        if result is None:
            _quiet_logs()
            result = _run_loop(tool.explain_once(cfg, args.rule))
            if result is None:
                print(f"vigil: no rule named {args.rule!r}", file=sys.stderr)
                return EXIT_USAGE
        sys.stdout.write(
            json.dumps(result, indent=2) + "\n" if args.json else output.alert_test_text(result)
        )
        return EXIT_OK
    url = _endpoint(cfg, "/status")
    try:
        listing = _ask(url)["alerts"] if url else None
    except (OSError, ValueError, KeyError):
        listing = None
    if listing is None:
        listing = tool.from_state(cfg)
    sys.stdout.write(
        json.dumps(listing, indent=2) + "\n" if args.json else output.alerts_text(listing)
    )
    return EXIT_OK


def cmd_checks(args: argparse.Namespace) -> int:
    """`run NAME`: run one check now, as the agent would (retries included),
    and print what it found; exit 0 if it passed, 1 if not. `list`: the
    running agent's checks and their availability."""
    from agent import output

    cfg = _load(args.config)
    if args.action == "run":
        found = [c for c in cfg.checks if c.name == args.check]
        if not args.check or not found:
            known = ", ".join(c.name for c in cfg.checks) or "none configured"
            print(f"vigil: {cfg.source}: no check named {args.check!r} ({known})", file=sys.stderr)
            return EXIT_USAGE
        _quiet_logs()
        run = _run_loop(_run_check(found[0]))
        sys.stdout.write(
            json.dumps(run, indent=2) + "\n" if args.json else output.check_run_text(run)
        )
        return EXIT_OK if run["ok"] else EXIT_FAILURE
    url = _endpoint(cfg, "/status")
    try:
        listing = (_ask(url)["checks"] or []) if url else None
    except (OSError, ValueError, KeyError):
        listing = None
    if listing is None:
        listing = [{"name": c.name, "type": c.type} for c in cfg.checks]
    sys.stdout.write(
        json.dumps(listing, indent=2) + "\n" if args.json else output.checks_text(listing)
    )
    return EXIT_OK


async def _run_check(cfg: CheckConfig) -> dict[str, Any]:
    from collectors.checks.model import ProbeContext
    from collectors.checks.runner import records, run_check
    from collectors.checks.sla import SLA

    run = await run_check(cfg.probe, cfg, ProbeContext())
    record = records(run, time.time(), SLA())[0]
    return record.to_dict()


def _quiet_logs() -> None:
    """For commands whose stdout is their answer: log errors only."""
    from agent.core import logsetup

    logsetup.configure("error", "console", stream=sys.stderr)  # stdout carries the answer
