"""The journal source (collectors/logs/journal.py) on real journal files:
entries written in journal export format, turned into journal files by
systemd-journal-remote, read back by journalctl as the agent runs it. No
systemd as PID 1 is needed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.core.schema import ConfigError, build
from collectors.logs import journal as journal_mod
from collectors.logs.config import JournalConfig, LogDetectorsConfig, RuleConfig
from collectors.logs.detectors.auth import parse_auth_line
from collectors.logs.files import LINES, TRUNCATED
from collectors.logs.journal import JournalFollower, entry_lines, field_text

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
needs_journal = pytest.mark.skipif(
    not (os.access(JOURNAL_REMOTE, os.X_OK) and shutil.which("journalctl")),
    reason="systemd-journal-remote or journalctl not installed (make test installs them)",
)
BOOT = "0123456789abcdef0123456789abcdef"
T0 = 1_718_378_161_000_000  # 2024-06-14T15:16:01Z, in microseconds
SSH = "_SYSTEMD_UNIT=ssh.service"


# -- writing journal files -------------------------------------------------------------


def entry(seq: int, message: str | bytes, **fields: str | bytes) -> dict[str, str | bytes]:
    """A journal entry as sshd on Debian 12 logs it, the `seq`-th in time."""
    return {
        "__REALTIME_TIMESTAMP": str(T0 + seq * 1000),
        "__MONOTONIC_TIMESTAMP": str(1_000_000 + seq * 1000),  # one boot: ordered by this
        "_BOOT_ID": BOOT,
        "_HOSTNAME": "combo",
        "SYSLOG_IDENTIFIER": "sshd",
        "SYSLOG_PID": str(1000 + seq % 50),
        "_SYSTEMD_UNIT": "ssh.service",
        "PRIORITY": "6",
        **fields,
        "MESSAGE": message,
    }


def export(entries: Iterable[Mapping[str, str | bytes]]) -> bytes:
    """The journal export format: FIELD=value lines, or FIELD, a 64-bit
    little-endian length and the raw bytes for values with newlines or
    binary data; a blank line ends an entry."""
    out = bytearray()
    for e in entries:
        for key, value in e.items():
            raw = value.encode() if isinstance(value, str) else value
            if b"\n" in raw or isinstance(value, bytes):
                out += key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                out += key.encode() + b"=" + raw + b"\n"
        out += b"\n"
    return bytes(out)


def write_journal(directory: Path, name: str, entries: Iterable[Mapping[str, str | bytes]]) -> Path:
    """A journal file `name` in `directory`, made by systemd-journal-remote
    next to it and renamed in whole, as journald's archived files appear."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{name}.journal"
    tmp.unlink(missing_ok=True)
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={tmp}", "-"],
        input=export(entries),
        check=True,
        capture_output=True,
        timeout=60,
    )
    final = directory / f"{name}.journal"
    os.rename(tmp, final)
    return final


# -- reading --------------------------------------------------------------------------


def config(directory: Path, **keys: Any) -> JournalConfig:
    data: dict[str, Any] = {"directory": str(directory), "start_at": "beginning", **keys}
    return build(JournalConfig, data, "test.toml")


def read_until(
    follower: JournalFollower, done: str, timeout: float = 20.0, budget: int = 16 << 20
) -> list[str]:
    """Lines read until one contains `done` (an entry written last)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(done in line for line in lines[-5:]):
        assert time.monotonic() < deadline, f"no {done!r} after {len(lines)} lines"
        now = time.time()
        follower.scan(now)
        chunks, more = follower.read(now, budget)
        for chunk in chunks:
            assert chunk.data.endswith(b"\n") and chunk.data.count(b"\n") == chunk.lines
            lines += chunk.data.decode().splitlines()
        if not chunks and not more:
            time.sleep(0.02)
    return lines


def messages(lines: list[str]) -> list[str]:
    return [line.split(": ", 1)[1] for line in lines]


@pytest.fixture
def followers():
    made: list[JournalFollower] = []

    def make(cfg: JournalConfig, saved: dict[str, Any] | None = None, counters=None):
        f = JournalFollower(cfg, saved, counters if counters is not None else {}, time.time())
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


# -- pure: entries to lines --------------------------------------------------------------


def test_an_entry_becomes_a_syslog_line_the_auth_detector_parses():
    e = {
        "__REALTIME_TIMESTAMP": str(T0),
        "_HOSTNAME": "combo",
        "SYSLOG_IDENTIFIER": "sshd",
        "SYSLOG_PID": "4711",
        "MESSAGE": "Failed password for invalid user admin from 203.0.113.9 port 52314 ssh2",
    }
    (line,) = entry_lines(e)
    assert line == (
        "2024-06-14T15:16:01.000000+00:00 combo sshd[4711]: "
        "Failed password for invalid user admin from 203.0.113.9 port 52314 ssh2"
    )
    parsed = parse_auth_line(line)
    assert parsed is not None
    assert (parsed.remote, parsed.user, parsed.pid, parsed.host) == (
        "203.0.113.9",
        "admin",
        4711,
        "combo",
    )


def test_entry_lines_for_odd_entries():
    # pam_unix's message through sshd, the old `sshd(pam_unix)` identifier, _PID and _COMM
    pam = "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4"
    (line,) = entry_lines({"SYSLOG_IDENTIFIER": "sshd(pam_unix)", "_PID": "19939", "MESSAGE": pam})
    assert line.endswith(f" localhost sshd(pam_unix)[19939]: {pam}")
    assert parse_auth_line(line) is not None
    assert entry_lines({"_COMM": "cron", "MESSAGE": "x"})[0].endswith(" localhost cron: x")
    assert entry_lines({"MESSAGE": "x"})[0].endswith(" localhost unknown: x")
    # white space or brackets in the identifier would break the header
    assert " my_app_v2_: x" in entry_lines({"SYSLOG_IDENTIFIER": "my app[v2]", "MESSAGE": "x"})[0]
    # one line per line of the message, each with the header
    assert messages(entry_lines({"MESSAGE": "Traceback:\n  File x\nValueError\n"})) == [
        "Traceback:",
        "  File x",
        "ValueError",
    ]
    assert messages(entry_lines({"MESSAGE": None})) == [""]
    assert entry_lines({"__REALTIME_TIMESTAMP": "bogus", "MESSAGE": "x"})[0].startswith("1970-")


def test_field_text_of_what_journalctl_prints():
    assert field_text("plain") == "plain"
    assert field_text(list(b"bad \xff bytes")) == "bad \ufffd bytes"
    assert field_text(list(b"\x1b[31mred\x1b[0m")) == "\x1b[31mred\x1b[0m"
    assert field_text(["one", "two"]) == "one two"  # a field with two values
    assert field_text(None) == ""
    assert field_text([300, 1]) == "300 1"


def test_journal_config_keys_and_errors():
    cfg = build(JournalConfig, {"matches": [SSH]}, "agent.toml")
    assert cfg.label == cfg.paths[0] == "journal:_SYSTEMD_UNIT=ssh.service"
    assert (cfg.start_at, cfg.events_per_minute, cfg.detectors) == (
        "end",
        20,
        ("auth", "volume", "new_errors"),
    )
    assert build(JournalConfig, {}, "a").label == "journal"
    assert build(
        JournalConfig, {"directory": "/j", "matches": [SSH, "+", "_COMM=cron"]}, "a"
    ).label == ("journal:/j:_SYSTEMD_UNIT=ssh.service + _COMM=cron")
    bad = [
        ({"matches": ["ssh.service"]}, "matches[0]"),
        ({"matches": ["+", SSH]}, "matches"),
        ({"paths": ["/var/log/x"]}, "paths"),  # a [[logs]] key that means nothing here
        ({"encoding": "latin-1"}, "encoding"),
        ({"events_per_minute": 0}, "events_per_minute"),
        ({"detectors": ["nope"]}, "detectors[0]"),
        ({"rules": [{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}]}, "rules"),
        ({"rules": [{"name": "a"}]}, "rules[0].pattern"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError) as exc:
            build(JournalConfig, data, "agent.toml")
        assert exc.value.problems[0].path == key, (data, exc.value.problems)


# -- real journal files ------------------------------------------------------------------


@needs_journal
def test_reads_matching_entries_and_resumes_after_the_cursor(tmp_path, followers):
    d = tmp_path / "journal"
    first = [entry(i, f"Failed password for root from 10.0.0.{i} port 22 ssh2") for i in range(10)]
    first.insert(
        3, entry(3, "session opened", _SYSTEMD_UNIT="cron.service", SYSLOG_IDENTIFIER="CRON")
    )
    write_journal(d, "a", first)
    counters: dict[str, list[int]] = {}
    cfg = config(d, matches=[SSH])
    f = followers(cfg, counters=counters)
    lines = read_until(f, "10.0.0.9 ")
    assert messages(lines) == [
        f"Failed password for root from 10.0.0.{i} port 22 ssh2" for i in range(10)
    ]
    assert lines[0] == (
        "2024-06-14T15:16:01.000000+00:00 combo sshd[1000]: "
        "Failed password for root from 10.0.0.0 port 22 ssh2"
    )
    assert counters[cfg.label][LINES] == 10
    saved = f.state()
    assert saved["files"] == [] and saved["cursor"]
    f.close()

    # later entries in a new file (journalctl reads every file in the directory)
    write_journal(
        d,
        "b",
        [entry(i, f"Failed password for root from 10.0.1.{i} port 22 ssh2") for i in range(10, 15)],
    )
    again = followers(cfg, saved)
    lines = read_until(again, "10.0.1.14 ")
    assert messages(lines) == [
        f"Failed password for root from 10.0.1.{i} port 22 ssh2" for i in range(10, 15)
    ]

    # and while following: a file that appears is read too
    write_journal(d, "c", [entry(20, "Failed password for root from 10.0.2.1 port 22 ssh2")])
    assert messages(read_until(again, "10.0.2.1 ")) == [
        "Failed password for root from 10.0.2.1 port 22 ssh2"
    ]


@needs_journal
def test_many_entries_read_in_steps_resume_exactly_once(tmp_path, followers):
    d = tmp_path / "journal"
    n = 20_000
    write_journal(d, "a", [entry(i, f"seq={i} " + "x" * 60) for i in range(n)])
    cfg = config(d)
    f = followers(cfg)
    # the first step stops at its budget, mid-stream: its state is where a kill -9 would resume
    got: list[str] = []
    deadline = time.monotonic() + 20
    while not got:
        assert time.monotonic() < deadline
        chunks, more = f.read(time.time(), 1)
        got += [line for c in chunks for line in c.data.decode().splitlines()]
    assert more and len(got) < n
    saved = f.state()
    f.close()
    rest = read_until(followers(cfg, saved), f"seq={n - 1} ")
    seqs = [int(m.split()[0].removeprefix("seq=")) for m in messages(got + rest)]
    assert seqs == list(range(n))


@needs_journal
def test_a_cursor_whose_entry_was_vacuumed_resumes_at_the_next_one(tmp_path, followers):
    before, after = tmp_path / "before", tmp_path / "after"
    write_journal(before, "a", [entry(i, f"e{i}") for i in range(10)])
    write_journal(after, "a", [entry(i, f"e{i}") for i in range(10) if i != 4])
    # the cursor of e4, as a run that stopped there would have committed it
    out = subprocess.run(
        ["journalctl", f"--directory={before}", "--output=json", "MESSAGE=e4"],
        capture_output=True,
        check=True,
    ).stdout
    saved = {"files": [], "cursor": json.loads(out)["__CURSOR"]}
    resumed = followers(config(before), saved)
    assert messages(read_until(resumed, "e9")) == [f"e{i}" for i in range(5, 10)]
    # e4 is gone: journalctl's --after-cursor would skip e5 too
    vacuumed = followers(config(after), saved)
    assert messages(read_until(vacuumed, "e9")) == [f"e{i}" for i in range(5, 10)]


@needs_journal
def test_binary_and_non_utf8_messages(tmp_path, followers):
    d = tmp_path / "journal"
    write_journal(
        d,
        "a",
        [
            entry(0, b"bad \xff\xfe bytes from 10.9.9.9"),
            entry(1, b"\x1b[31mcolour\x1b[0m and a NUL \x00 here"),
            entry(2, "two\nlines"),
            entry(3, "done"),
        ],
    )
    lines = read_until(followers(config(d)), "done")
    assert messages(lines) == [
        "bad \ufffd\ufffd bytes from 10.9.9.9",
        "\x1b[31mcolour\x1b[0m and a NUL \x00 here",
        "two",
        "lines",
        "done",
    ]


@needs_journal
def test_a_huge_message_is_cut_and_a_monstrous_one_skipped(tmp_path, followers, monkeypatch):
    d = tmp_path / "journal"
    write_journal(d, "a", [entry(0, "A" * 150_000), entry(1, "B" * 300_000), entry(2, "after")])
    monkeypatch.setattr(journal_mod, "MAX_ENTRY_BYTES", 200_000)  # the B entry's JSON is longer
    counters: dict[str, list[int]] = {}
    cfg = config(d, max_line_bytes="64KiB")
    lines = read_until(followers(cfg, counters=counters), "after")
    assert len(lines) == 2
    assert messages(lines)[0] == "A" * (65536 - len(lines[0].split(": ", 1)[0]) - 2)
    assert messages(lines)[1] == "after"
    assert counters[cfg.label][TRUNCATED] == 2  # one cut, one skipped


@needs_journal
def test_start_at_end_skips_what_is_there_and_misses_nothing_after(tmp_path, followers):
    d = tmp_path / "journal"
    write_journal(d, "a", [entry(i, f"old {i}") for i in range(5)])
    cfg = build(JournalConfig, {"directory": str(d)}, "t")  # start_at = "end"
    f = followers(cfg)
    assert f.cursor is not None and f.changed  # committed at the next commit
    write_journal(d, "b", [entry(10, "new 10"), entry(11, "new 11")])
    assert messages(read_until(f, "new 11")) == ["new 10", "new 11"]


@needs_journal
def test_journalctl_failing_is_logged_once_and_retried(tmp_path, followers, monkeypatch):
    monkeypatch.setattr(journal_mod, "RETRY_SECONDS", 0.05)
    d = tmp_path / "not-yet"
    f = followers(config(d))
    deadline = time.monotonic() + 10
    while f.reported is None:  # journalctl exits: no such directory
        assert time.monotonic() < deadline
        f.scan(time.time())
        f.read(time.time(), 1 << 20)
        time.sleep(0.02)
    assert "journal_reader_exited" in f.reported
    write_journal(d, "a", [entry(0, "finally")])
    assert messages(read_until(f, "finally")) == ["finally"]
    assert f.reported is None


def test_journalctl_missing_is_reported(tmp_path):
    g = JournalFollower(config(tmp_path), None, {}, time.time(), journalctl=str(tmp_path / "nope"))
    assert g.proc is None and "journal_reader_unavailable" in (g.reported or "")
    assert g.read(time.time(), 1 << 20) == ([], False)
    g.close()


# -- through the log collector ------------------------------------------------------------


class Committer:
    """Keeps what the tailer commits, as the agent's buffer would."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    async def load_checkpoint(self, store, name: str):
        return await asyncio.to_thread(store.load, name, None)

    async def commit_checkpoint(self, store, records, parts) -> None:
        await asyncio.to_thread(store.commit, None, [], parts)
        self.records += records


def metric(records, name: str, **labels: str) -> float | None:
    found = [r.value for r in records if r.name == name and r.labels == labels]
    return found[-1] if found else None


@needs_journal
def test_the_log_collector_follows_a_journal_table_and_counts_once(tmp_path):
    from collectors.logs.tailer import LogCollector

    d = tmp_path / "journal"
    fails = [
        entry(i, f"Failed password for invalid user u{i} from 198.51.100.{i % 3} port 4{i} ssh2")
        for i in range(12)
    ]
    write_journal(d, "a", fails)
    cfg = config(
        d,
        matches=[SSH],
        poll_interval="50ms",
        default_rules=False,
        rules=[{"name": "failed", "pattern": "Failed password"}],
    )
    assert cfg.rules == (RuleConfig(name="failed", pattern="Failed password"),)
    sink = Committer()

    async def run_once(expect: int) -> list:
        logs = LogCollector([cfg], LogDetectorsConfig(), tmp_path / "state")
        await logs.start(sink)
        deadline = time.monotonic() + 20
        while (
            metric(
                logs.collect(time.time(), 0.0), "log_matches_total", rule="failed", file=cfg.label
            )
            != expect
        ):
            assert time.monotonic() < deadline, "matches never reached the count"
            await asyncio.sleep(0.05)
        out = logs.collect(time.time(), 0.0)
        await logs.stop()
        return out

    first = asyncio.run(run_once(12))
    assert metric(first, "auth_failures_total", remote="198.51.100.0") == 4
    assert metric(first, "log_lines_read_total", file=cfg.label) == 12
    write_journal(d, "b", [entry(20, "Failed password for root from 198.51.100.0 port 1 ssh2")])
    second = asyncio.run(run_once(13))  # resumed from the committed cursor: 12 + 1
    assert metric(second, "auth_failures_total", remote="198.51.100.0") == 5
    lines = [r["fields"]["line"] for r in sink.records if r["fields"].get("rule") == "failed"]
    assert len(lines) == len(set(lines)) == 13


def test_the_design_example_is_an_agent_config(tmp_path):
    from agent.config import load

    path = tmp_path / "agent.toml"
    path.write_text('[[journal]]\nmatches = ["_SYSTEMD_UNIT=ssh.service"]\n')
    (table,) = load(path).journal
    assert table.label == "journal:_SYSTEMD_UNIT=ssh.service" and table.directory is None
    path.write_text('[[journal]]\nmatches = ["ssh"]\n')
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert exc.value.problems[0].path == "journal[0].matches[0]"
