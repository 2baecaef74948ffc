"""The journal end to end: journal files made by systemd-journal-remote from
sshd's failed logins (the Loghub Linux sample's PAM lines, as Debian 12's
sshd writes them to the journal, plus sshd's own `Failed password` lines),
a real agent with a `[[journal]]` table on their directory, a real hub.
The agent is killed with SIGKILL three times while new journal files arrive; at
the hub every failed login is counted once, by the auth detector and by a
rule of our own, and every matching entry is one event."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

from tests.collectors.logs.test_journal import entry, needs_journal, write_journal
from tests.conftest import wait_for
from tests.e2e.harness import Agent, agent_config, free_port, vigil
from tests.e2e.test_hub_ingest import HubProcess

LINUX_2K = Path(__file__).parents[1] / "fixtures" / "loghub" / "Linux_2k.log"
HOST = "journal-1"
_SYSLOG = re.compile(r"^\w{3} +\d+ [\d:]+ (\S+) sshd\(pam_unix\)\[(\d+)\]: (.*)$")


def sshd_entries() -> list[dict[str, str | bytes]]:
    """The sample's `sshd(pam_unix)[PID]:` lines as today's journal holds
    them (identifier sshd, `pam_unix(sshd:auth): ...`), interleaved with
    `Failed password` lines from other addresses and pids, and with entries
    of another unit that the table's match must leave out."""
    out: list[dict[str, str | bytes]] = []
    for line in LINUX_2K.read_text().splitlines():
        m = _SYSLOG.match(line)
        if m is None:
            continue
        host, pid, message = m.groups()
        kind = "session" if message.startswith("session ") else "auth"
        seq = len(out)
        out.append(entry(seq, f"pam_unix(sshd:{kind}): {message}", _HOSTNAME=host, SYSLOG_PID=pid))
        if seq % 9 == 0:
            n = len(out)
            out.append(
                entry(
                    n,
                    f"Failed password for invalid user u{n} from 203.0.113.{n % 4} "
                    f"port {40000 + n} ssh2",
                    SYSLOG_PID=str(90000 + n),
                )
            )
            out.append(
                entry(
                    n + 1,
                    f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
                    f"tty=ssh ruser= rhost=198.18.0.{n % 3}  user=root",
                    _SYSTEMD_UNIT="sshd-container.service",
                    SYSLOG_PID=str(95000 + n),
                )
            )
    return out


def expected(entries: list[dict[str, str | bytes]]) -> tuple[int, Counter[str]]:
    """Matches of the rule and failures per remote, counted from the entries."""
    ssh = [str(e["MESSAGE"]) for e in entries if e["_SYSTEMD_UNIT"] == "ssh.service"]
    failures = [m for m in ssh if "authentication failure;" in m or "Failed password for" in m]
    remotes: Counter[str] = Counter()
    for m in failures:
        found = re.search(r"rhost=(\S+)", m) or re.search(r" from (\S+) port", m)
        if found:  # a PAM line with an empty rhost= is a console login, not counted
            remotes[found.group(1)] += 1
    return len(failures), remotes


def hub_latest(hub: HubProcess, name: str) -> dict[str, float]:
    """The latest value of every series of `name` at the hub, by its labels."""
    series = hub.get(f"/v1/metrics?host={HOST}&name={name}")["series"]
    return {json.dumps(s["labels"], sort_keys=True): s["points"][-1][1] for s in series}


def rule_matches(hub: HubProcess) -> float:
    series = hub.get(f"/v1/metrics?host={HOST}&name=log_matches_total")["series"]
    return sum(s["points"][-1][1] for s in series if s["labels"].get("rule") == "failed")


def failures_by_remote(hub: HubProcess) -> dict[str, float]:
    series = hub.get(f"/v1/metrics?host={HOST}&name=auth_failures_total")["series"]
    return {s["labels"]["remote"]: s["points"][-1][1] for s in series}


def journal_config(tmp: Path, hub: HubProcess, directory: Path) -> str:
    return agent_config(
        tmp,
        f'host_id = "{HOST}"\n[hub]\nurl = "{hub.url}"\ntoken = "{hub.token(HOST)}"\n'
        'max_backoff = "1s"\n[buffer]\nflush_interval = "100ms"\n'
        f'[[journal]]\ndirectory = "{directory}"\nmatches = ["_SYSTEMD_UNIT=ssh.service"]\n'
        'start_at = "beginning"\ndefault_rules = false\ndetectors = ["auth"]\n'
        'events_per_minute = 1000000\npoll_interval = "200ms"\ncontext_lines = 0\n'
        '  [[journal.rules]]\n  name = "failed"\n'
        "  pattern = 'authentication failure;|Failed password for'\n",
        interval="500ms",
        port=free_port(),  # the local endpoint, for vigil status
    )


@needs_journal
def test_failed_logins_in_the_journal_count_once_at_the_hub_across_kill_9(tmp_path):
    entries = sshd_entries()
    total, remotes = expected(entries)
    assert total > 500 and len(remotes) > 10  # the sample is what we think it is
    fifth = len(entries) // 5
    parts = [entries[i * fifth : (i + 1) * fifth] for i in range(4)] + [entries[4 * fifth :]]
    directory = tmp_path / "journal"
    (tmp_path / "hubside").mkdir()
    hub = HubProcess(tmp_path / "hubside")
    config = journal_config(tmp_path, hub, directory)
    write_journal(directory, "part0", parts[0])
    agent = Agent(tmp_path, config)
    try:
        agent.notify.wait("READY=1")
        first, _ = expected(parts[0])
        wait_for(lambda: rule_matches(hub) == first, 30, "the first file counted at the hub")

        # a new file arrives and the agent dies while (or before) reading it,
        # twice; then once more before a file is written while it is down
        for part in parts[1:3]:
            write_journal(directory, str(part[0]["__REALTIME_TIMESTAMP"]), part)
            agent.proc.kill()
            agent.proc.wait()
            agent.stop()
            agent = Agent(tmp_path, config)
            agent.notify.wait("READY=1")
        agent.proc.kill()
        agent.proc.wait()
        agent.stop()
        write_journal(directory, "down", parts[3])  # written while the agent is down
        agent = Agent(tmp_path, config)
        agent.notify.wait("READY=1")
        write_journal(directory, "last", parts[4])  # and one while it runs again
        wait_for(lambda: rule_matches(hub) >= total, 60, "every failed login at the hub")
        shown = vigil("status", "--config", str(agent.config_path), timeout=30).stdout
        assert f"journal:{directory}:_SYSTEMD_UNIT=ssh.service: cursor s=" in shown
        assert agent.stop() == 0  # its last counters pushed

        hub_deadline = time.monotonic() + 10
        while rule_matches(hub) != total and time.monotonic() < hub_deadline:
            time.sleep(0.2)
        assert rule_matches(hub) == total
        assert failures_by_remote(hub) == dict(remotes)
        events = hub.get_all(f"/v1/events?host={HOST}&kind=log", "events")
        lines = [e["fields"]["line"] for e in events if e["fields"].get("rule") == "failed"]
        assert len(lines) == len(set(lines)) == total, "an entry was lost or sent twice"
        assert all(" combo sshd[" in line for line in lines)
        security = hub.get(f"/v1/events?host={HOST}&kind=security")["events"]
        assert any(e["fields"].get("remote") == "150.183.249.110" for e in security)
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        hub.stop()
