"""The import graph points one way (docs/development.md, "Layers"):

    agent/core/   the base layer: records, schema, protocol, retry, HTTP,
                  atomic writes, state directory, sd_notify, logging.
                  Imports nothing else of the project.
    collectors/   plugins: import only the base layer (and themselves).
    agent/notifiers/  notifier plugins, shared with the hub's alerts:
                  import only the base layer (and themselves).
    hub/          the central collector: imports only the base layer and
                  the notifiers (its own alerts, such as HostSilent).
    agent/        the daemon on top: wires everything.

Every import counts, those inside functions too (a lazy import is still a
dependency), and no two modules may import each other, directly or round
a circle."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hub.auth import host_token
from tests.conftest import wait_for
from tests.e2e.harness import free_port

ROOT = Path(__file__).parents[1]
PACKAGES = ("agent", "collectors", "hub")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if n in known else node.module for n in names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in PACKAGES}
    return out


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


def layer(module: str) -> str:
    if module == "agent" or module.startswith("agent.core"):
        return "base"  # `agent` itself holds only __version__
    if module.startswith("agent.notifiers"):
        return "notifiers"
    return module.split(".")[0]


ALLOWED = {
    "base": {"base"},
    "collectors": {"base", "collectors"},
    "notifiers": {"base", "notifiers"},
    "hub": {"base", "notifiers", "hub"},  # the hub's alerts use the agent's notifiers
    "agent": {"base", "collectors", "notifiers", "hub", "agent"},
}


def test_every_import_points_down_the_layers():
    wrong = sorted(
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer(target) not in ALLOWED[layer(module)]
    )
    assert wrong == []


def test_no_import_cycles():
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH or target == module:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


FORBIDDEN_IN_HUB = (
    "collectors",
    "agent.alerts",
    "agent.runtime",
    "agent.config",
    "psutil",
)


def test_vigil_hub_run_loads_no_collector_and_no_alert_engine(tmp_path):
    """The real `vigil hub run` process reports every module it imported
    (`-X importtime`, on stderr), those of its first ingest included."""
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{tmp_path / "data"}"\n')
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-X", "importtime", "-m", "agent", "hub", "run"]
    with open(tmp_path / "stderr", "w+") as stderr:
        proc = subprocess.Popen(
            [*command, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
        )
        try:
            wait_for(lambda: _answers(url + "/healthz"), timeout=30, what="the hub's /healthz")
            secret = (tmp_path / "data" / "hub.secret").read_bytes().strip()
            ingest = urllib.request.Request(
                url + "/v1/ingest",
                data=(ROOT / "tests/fixtures/protocol/batch-v1.msgpack.zst").read_bytes(),
                headers={
                    "Content-Encoding": "zstd",
                    "Authorization": f"Bearer {host_token('web-01', secret)}",
                },
            )
            with urllib.request.urlopen(ingest, timeout=30) as resp:
                assert resp.status == 200
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
        stderr.seek(0)
        lines = stderr.read().splitlines()
    imported = [
        line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")
    ]
    assert {"hub.server", "hub.store.sqlite", "aiohttp.web"} <= set(imported)
    assert [
        m for m in imported if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_HUB)
    ] == []


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


# what a host with the default configuration (host metrics, default alert
# rules, no checks, no logs, no notifier of its own) has no use for
NOT_CONFIGURED = (
    "collectors.checks.command",
    "collectors.checks.dns",
    "collectors.checks.http",
    "collectors.checks.tcp",
    "collectors.checks.tls",
    "collectors.logs.detectors.auth",
    "collectors.logs.detectors.volume",
    "collectors.logs.detectors.signatures",
    "agent.notifiers.alertmanager",
    "agent.notifiers.webhook",
    "agent.notifiers.exec",
    "agent.notifiers.file",
    "aiohttp",
    "psutil",
    "fractions",
)


def test_vigil_run_with_the_defaults_loads_nothing_it_does_not_use(tmp_path):
    """The real `vigil run` (its `__main__`, under a wrapper that writes
    `sys.modules` at exit: `-X importtime` does not see the lazy registries'
    `importlib.import_module`) with the default configuration, past its
    first collections: no check type, log detector or remote notifier, none
    of their libraries, no HTTP library (no endpoint is configured). A check
    configured loads the check types."""
    config, modules = tmp_path / "agent.toml", tmp_path / "modules"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\ninterval = "200ms"\nlog_format = "json"\n'
    )
    wrapper = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: open({str(modules)!r}, 'w').write(' '.join(sys.modules)))\n"
        f"sys.argv = ['vigil', 'run', '--config', {str(config)!r}]\n"
        "runpy.run_module('agent', run_name='__main__')\n"
    )

    def imported(extra: str) -> set[str]:
        config.write_text(config.read_text() + extra)
        out = tmp_path / "stdout"
        with open(out, "w") as stdout:
            proc = subprocess.Popen([sys.executable, "-c", wrapper], stdout=stdout, cwd=ROOT)
            try:
                wait_for(lambda: '"agent_ready"' in out.read_text(), timeout=30, what="ready")
                time.sleep(1.0)  # a few collection cycles, at 200 ms, and their alert rules
            finally:
                proc.terminate()
                assert proc.wait(30) == 0
        return set(modules.read_text().split())

    default = imported("")
    assert {"agent.runtime", "collectors.procfs", "agent.alerts.engine"} <= default
    unused = [m for m in default for f in NOT_CONFIGURED if m == f or m.startswith(f + ".")]
    assert sorted(unused) == []
    with_check = imported('[[checks]]\nname = "ssh"\ntype = "tcp"\naddress = "127.0.0.1:9"\n')
    assert "collectors.checks.tcp" in with_check
    # a hub to push to and an http check: both requests are agent/core/h1.py's
    # (14 MB less than aiohttp's client); aiohttp is for remote notifiers only
    pushing = imported(
        '[[checks]]\nname = "web"\ntype = "http"\nurl = "http://127.0.0.1:9/"\ninterval = "1s"\n'
        f'[hub]\nurl = "http://127.0.0.1:9"\ntoken = "{socket.gethostname()}.{"0" * 64}"\n'
    )
    assert {"collectors.checks.http", "agent.shipper", "agent.core.h1"} <= pushing
    assert sorted(m for m in pushing if m.split(".")[0] == "aiohttp") == []
