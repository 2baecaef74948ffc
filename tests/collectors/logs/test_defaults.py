"""The default rule set: well-formed, and right on real logs (Loghub samples)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from collectors.logs.defaults import DEFAULT_RULES, SEVERITIES
from collectors.logs.detectors.auth import AuthDetector
from collectors.logs.detectors.base import ERROR_PATTERN

LOGHUB = Path(__file__).parents[2] / "fixtures" / "loghub"  # copies of ../shared/data/loghub

COMPILED = [
    (name, re.compile(pattern.encode()), severity) for name, pattern, severity in DEFAULT_RULES
]


def matching(line: bytes) -> list[str]:
    return [name for name, pattern, _ in COMPILED if pattern.search(line)]


def sample(name: str) -> list[bytes]:
    path = LOGHUB / name
    return path.read_bytes().splitlines()


def test_rules_are_well_formed() -> None:
    names = [name for name, _, _ in DEFAULT_RULES]
    assert len(names) == len(set(names))
    for name, pattern, severity in DEFAULT_RULES:
        assert re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", name), name
        assert severity in SEVERITIES, (name, severity)
        re.compile(pattern)
        re.compile(pattern.encode("ascii"))
        # what Hyperscan does not take: lookarounds, back-references, inline flags
        assert not re.search(r"\(\?[=!<]|\\[1-9]|\(\?[aiLmsux]", pattern), name
        assert not re.compile(pattern).search(""), f"{name} matches an empty line"


def test_patterns_compile_for_hyperscan() -> None:
    hyperscan = pytest.importorskip("hyperscan")
    patterns = [p for _, p, _ in DEFAULT_RULES] + [ERROR_PATTERN, *AuthDetector.patterns]
    db = hyperscan.Database()
    db.compile(
        expressions=[p.encode() for p in patterns],
        ids=list(range(len(patterns))),
        flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(patterns),
    )


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (
            "Nov 26 10:00:00 db kernel: [123.456] Out of memory: Killed process 4242 (postgres) "
            "total-vm:123kB, anon-rss:456kB",
            "oom_killer",
        ),
        (
            "Jun 1 10:00:00 db kernel: Out of memory: Kill process 4242 (java) score 900 or "
            "sacrifice child",
            "oom_killer",
        ),
        ("kernel: oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=java", "oom_killer"),
        ("kernel: java invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE)", "oom_killer"),
        (
            "kernel: Memory cgroup out of memory: Killed process 77 (node) total-vm:1kB",
            "oom_killer",
        ),
        ("kernel: app[4242]: segfault at 0 ip 00007f sp 00007ffc error 4 in libc.so.6", "segfault"),
        (
            "kernel: blk_update_request: I/O error, dev sda, sector 123 op 0x0:(READ)",
            "disk_io_error",
        ),
        ("kernel: Buffer I/O error on dev sda1, logical block 0, async page read", "disk_io_error"),
        ("kernel: EXT4-fs error (device sda1): ext4_find_entry:1455: inode #2", "disk_io_error"),
        ("ERROR app: database connection failed: timeout", "database_connection_failed"),
        (
            "PDOException: SQLSTATE[HY000] [2002] Can't connect to MySQL server on db",
            "database_connection_failed",
        ),
        (
            "psql: error: could not connect to server: Connection refused",
            "database_connection_failed",
        ),
        ("upstream timed out (110: Connection timed out) while reading", "timeout"),
        ("ERROR: canceling statement: lock timeout exceeded", "timeout"),
        ("redis: memory allocation failed", "memory_allocation_failed"),
        ("fork: Cannot allocate memory", "memory_allocation_failed"),
        ("write /var/lib/app/x: No space left on device", "no_space_left"),
        ("kernel: Kernel panic - not syncing: Fatal exception in interrupt", "kernel_panic"),
        ("accept4() failed (24: Too many open files)", "too_many_open_files"),
        ('Exception in thread "main" java.lang.NullPointerException', "java_exception"),
        ("java.net.SocketTimeoutException: Read timed out", "java_exception"),
        (
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
            "apache_error",
        ),
        ("[Tue Nov 26 10:00:00.1 2026] [proxy:error] [pid 1] AH00940: failed", "apache_error"),
        ("[Tue Nov 26 10:00:00 2026] [core:crit] AH00102: [crit] child", "apache_critical"),
        (
            "systemd[1]: Failed to start nginx.service - A high performance web server.",
            "systemd_service_failed",
        ),
        (
            "systemd[1]: app.service: Main process exited, code=exited, status=1/FAILURE",
            "systemd_service_failed",
        ),
        ("systemd[1]: app.service: Failed with result 'exit-code'.", "systemd_service_failed"),
        ("dial tcp 127.0.0.1:6379: connect: connection refused", "connection_refused"),
        (
            "curl: (7) Failed to connect to localhost port 80: Connection refused",
            "connection_refused",
        ),
    ],
)
def test_rule_matches(line: str, rule: str) -> None:
    assert rule in matching(line.encode())


@pytest.mark.parametrize(
    "line",
    [
        "Nov 26 10:00:00 web-01 sshd[1]: Accepted publickey for root from 192.0.2.1 port 22 ssh2",
        "Nov 26 10:00:00 web-01 systemd[1]: Started app.service - The app.",
        "Nov 26 10:00:00 web-01 kernel: EXT4-fs (sda1): mounted filesystem with ordered data mode",
        "2026-11-26 10:00:00,001 INFO  [main] - no exceptions so far, 0 errors",
    ],
)
def test_ordinary_lines_match_no_rule(line: str) -> None:
    assert matching(line.encode()) == []


def test_every_apache_error_line_is_matched() -> None:
    lines = sample("Apache_2k.log")
    with (LOGHUB / "Apache_2k.log_structured.csv").open(newline="", encoding="utf-8") as f:
        levels = {int(row["LineId"]): row["Level"] for row in csv.DictReader(f)}
    assert len(levels) == len(lines)
    errors = [lines[i - 1] for i, level in levels.items() if level == "error"]
    notices = [lines[i - 1] for i, level in levels.items() if level != "error"]
    assert len(errors) > 500
    unmatched = [line for line in errors if not matching(line)]
    assert unmatched == []
    assert [line for line in notices if matching(line)] == []


def test_zookeeper_exception_lines_are_matched() -> None:
    lines = [line for line in sample("Zookeeper_2k.log") if b"Exception" in line]
    assert len(lines) >= 5
    assert [line for line in lines if "java_exception" not in matching(line)] == []


def test_plain_info_lines_rarely_match() -> None:
    lines = sample("HDFS_2k.log")
    matched = [line for line in lines if matching(line)]
    assert len(matched) < len(lines) / 100, matched[:5]
    info = [line for line in sample("Zookeeper_2k.log") if b" - INFO " in line]
    assert len([line for line in info if matching(line)]) < len(info) / 100
