"""The import graph points one way (docs/development.md, "Layers"):

    agent/core/   the base layer: records, schema, protocol, retry, HTTP,
                  atomic writes, state directory, sd_notify, logging.
                  Imports nothing else of the project.
    collectors/   plugins: import only the base layer (and themselves).
    agent/notifiers/  notifier plugins, shared with the hub's alerts:
                  import only the base layer (and themselves).
    hub/          the central collector: imports only the base layer.
    agent/        the daemon on top: wires everything.

Every import counts, those inside functions too (a lazy import is still a
dependency), and no two modules may import each other, directly or round
a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
    "hub": {"base", "hub"},
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


FORBIDDEN_IN_HUB = ("collectors", "agent.alerts", "agent.runtime", "agent.config", "psutil")


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return result.stdout.split()


def test_vigil_hub_loads_no_collector_and_no_alert_engine(tmp_path):
    """`vigil hub token` goes through the same dispatch as `vigil hub run`,
    and hub.server is what `hub run` serves with."""
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "data"}"\n')
    code = (
        "import contextlib, io\n"
        "from agent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['hub', 'token', 'web-01', '--config', {str(config)!r}]) == 0\n"
        "import hub.server"
    )
    loaded = loaded_after(code)
    assert "hub.server" in loaded and "hub.app" in loaded  # it did run the hub's code
    assert [
        m for m in loaded if m.split(".")[0] in FORBIDDEN_IN_HUB or m.startswith(FORBIDDEN_IN_HUB)
    ] == []
