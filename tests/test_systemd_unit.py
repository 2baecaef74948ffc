"""The shipped unit file, checked by systemd's own tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[1] / "systemd" / "vigil-agent.service"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze (Debian package systemd) is not installed; `make test` installs it",
)


@pytest.fixture(params=["vigil-agent.service", "vigil-hub.service"])
def unit(tmp_path, request):
    # verify checks that ExecStart exists: point it at this checkout's vigil,
    # as a package install puts it at /usr/bin/vigil.
    vigil = Path(sys.executable).parent / "vigil"
    path = tmp_path / request.param
    path.write_text((UNIT.parent / request.param).read_text().replace("/usr/bin/vigil", str(vigil)))
    return path


def test_unit_passes_systemd_analyze_verify(unit):
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert unit.name not in result.stderr, result.stderr  # no warnings about us


def test_unit_declares_what_the_agent_relies_on():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=vigil",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "MemoryMax=",
        "User=vigil",
        "SupplementaryGroups=adm",
    ):
        assert line in text, line
    sysusers = (UNIT.parent / "vigil.sysusers.conf").read_text()
    assert re.search(r"^u vigil ", sysusers, re.M) and re.search(r"^m vigil adm$", sysusers, re.M)


def test_security_exposure_score(unit, capsys):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    score, verdict = float(match.group(1)), match.group(2)
    with capsys.disabled():
        print(
            f"\nsystemd-analyze security {unit.name}: exposure {score} {verdict}"
            " (0 = fully locked down, 10 = none)"
        )
    assert verdict in ("OK", "SAFE"), result.stdout
