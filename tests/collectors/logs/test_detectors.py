"""The log detectors: failed logins, volume spikes, new error signatures.

Literal lines for parsing and dedup; the real Linux_2k.log sample (Loghub)
for the per-remote counts, checked against its structured CSV.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.logs import detectors as detectors_module
from collectors.logs.detectors import (
    ERROR_PATTERN,
    AuthDetector,
    AuthLine,
    Finding,
    SignatureDetector,
    VolumeDetector,
    parse_auth_line,
    template,
)

LOGHUB = Path(__file__).parents[2] / "fixtures" / "loghub"  # copies of ../shared/data/loghub

H = "Nov 26 10:00:00 web-01"
ISO = "2026-11-26T10:00:00.123456+00:00 web-01"
PAM_FMT = (
    "{h} sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
    "tty=ssh ruser= rhost={addr}  user={user}"
)
PAM_NOUSER_FMT = (
    "{h} sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
    "tty=ssh ruser= rhost={addr}"
)
FAILED_FMT = "{h} sshd[{pid}]: Failed password for {user} from {addr} port 52113 ssh2"
MORE_FMT = (
    "{h} sshd[{pid}]: PAM {n} more authentication failures; logname= uid=0 euid=0 tty=ssh "
    "ruser= rhost={addr}  user={user}"
)


def pam(addr: str = "203.0.113.5", pid: int = 123, user: str = "root") -> str:
    return PAM_FMT.format(h=H, pid=pid, addr=addr, user=user)


def failed(addr: str = "203.0.113.5", pid: int = 123, user: str = "root") -> str:
    return FAILED_FMT.format(h=H, pid=pid, addr=addr, user=user)


def more(n: int, addr: str = "203.0.113.5", pid: int = 123, user: str = "root") -> str:
    return MORE_FMT.format(h=H, pid=pid, addr=addr, user=user, n=n)


def feed_all(det: AuthDetector, lines: list[str], now: float = 1000.0) -> list[Finding]:
    prefilter = [re.compile(p) for p in AuthDetector.PREFILTER]
    findings: list[Finding] = []
    for i, line in enumerate(lines):
        assert any(p.search(line) for p in prefilter), line
        findings += det.feed(line, now + i)
    return findings


# -- parsing


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f"{ISO} sshd[123]: Failed password for invalid user admin from 203.0.113.5 "
            "port 52113 ssh2",
            AuthLine("sshd", "password", "203.0.113.5", "admin", 1, 123, "web-01", True),
        ),
        (
            f"{H} sshd[123]: pam_unix(sshd:auth): authentication failure; logname= uid=0 "
            "euid=0 tty=ssh ruser= rhost=203.0.113.5  user=root",
            AuthLine("pam", "pam", "203.0.113.5", "root", 1, 123, "web-01"),
        ),
        (
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= "
            "uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4 ",
            AuthLine("pam", "pam", "218.188.2.4", "", 1, 19939, "combo"),
        ),
        (
            "Jun 15 12:12:34 combo sshd(pam_unix)[23397]: authentication failure; logname= "
            "uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4  user=root",
            AuthLine("pam", "pam", "218.188.2.4", "root", 1, 23397, "combo"),
        ),
        (
            f"{H} sshd[123]: message repeated 3 times: [ Failed password for root from "
            "203.0.113.5 port 52113 ssh2]",
            AuthLine("sshd", "password", "203.0.113.5", "root", 3, 123, "web-01"),
        ),
        (
            f"{H} sshd[123]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh "
            "ruser= rhost=203.0.113.5  user=root",
            AuthLine("pam", "pam", "203.0.113.5", "root", 2, 123, "web-01"),
        ),
        (
            f"{H} sshd[123]: pam_unix(sshd:auth): 4 more authentication failures; logname= "
            "uid=0 euid=0 tty=ssh ruser= rhost=example.net  user=root",
            AuthLine("pam", "pam", "example.net", "root", 4, 123, "web-01"),
        ),
        (
            "Nov  6 10:00:00 web-01 sshd-session[77]: Failed publickey for git from 2001:db8::1 "
            "port 22 ssh2: ED25519 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            AuthLine("sshd", "publickey", "2001:db8::1", "git", 1, 77, "web-01"),
        ),
        (
            f"{ISO} sshd[9]: Failed keyboard-interactive/pam for invalid user oracle "
            "from 198.51.100.7 port 4022 ssh2",
            AuthLine(
                "sshd", "keyboard-interactive/pam", "198.51.100.7", "oracle", 1, 9, "web-01", True
            ),
        ),
        (
            f"{H} sshd[9]: Failed none for invalid user  from 198.51.100.7 port 4022 ssh2",
            AuthLine("sshd", "none", "198.51.100.7", "", 1, 9, "web-01", True),
        ),
        (
            "2026-11-26T10:00:00+0000 web-01 sshd[9]: Failed password for root from "
            "::ffff:192.0.2.1 port 22 ssh2\n",
            AuthLine("sshd", "password", "::ffff:192.0.2.1", "root", 1, 9, "web-01"),
        ),
    ],
)
def test_parse_auth_line(line: str, expected: AuthLine) -> None:
    assert parse_auth_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        # a console login: empty rhost, not remote
        "Jul 11 11:33:13 combo gdm(pam_unix)[2803]: authentication failure; logname= uid=0 "
        "euid=0 tty=:0 ruser= rhost= ",
        f"{H} sshd[5]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=ssh ruser= rhost=  user=root",
        # other programs and services are out of scope
        "Jun 30 20:53:04 combo klogind[19272]: Authentication failed from 163.27.187.39 "
        "(163.27.187.39): Permission denied in replay cache code ",
        f"{H} su[5]: pam_unix(su:auth): authentication failure; logname=bob uid=1000 euid=0 "
        "tty=/dev/pts/0 ruser=bob rhost=  user=root",
        f"{H} login[5]: pam_unix(login:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=tty1 ruser= rhost=10.0.0.1  user=root",
        f"{H} dovecot[5]: Failed password for root from 10.0.0.1 port 1 ssh2",
        # not failures
        "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown",
        f"{H} sshd[5]: Accepted password for root from 10.0.0.1 port 22 ssh2",
        f"{H} sshd[5]: Invalid user admin from 10.0.0.1 port 22",
        "not syslog at all: Failed password for root from 10.0.0.1 port 22 ssh2",
    ],
)
def test_parse_auth_line_ignores(line: str) -> None:
    assert parse_auth_line(line) is None


# -- counting and dedup


def test_sshd_and_pam_for_one_attempt_count_once() -> None:
    det = AuthDetector()
    feed_all(det, [pam(), failed()])
    assert det.by_remote == {"203.0.113.5": 1}
    assert det.by_user == {"root": 1}


def test_sshd_line_first_then_pam_counts_once() -> None:
    det = AuthDetector()
    feed_all(det, [failed(), pam()])
    assert det.by_remote == {"203.0.113.5": 1}


def test_pam_only_counts_each_line() -> None:
    det = AuthDetector()
    feed_all(det, [pam(pid=100), pam(pid=100), pam(pid=101), pam(addr="198.51.100.9")])
    assert det.by_remote == {"203.0.113.5": 3, "198.51.100.9": 1}


def test_sshd_only_counts_each_line() -> None:
    det = AuthDetector()
    feed_all(det, [failed(), failed(), failed(user="admin")])
    assert det.by_remote == {"203.0.113.5": 3}
    assert det.by_user == {"root": 2, "admin": 1}


def test_message_repeated_counts_n() -> None:
    det = AuthDetector()
    line = (
        f"{H} sshd[123]: message repeated 3 times: [ Failed password for root from "
        "203.0.113.5 port 52113 ssh2]"
    )
    feed_all(det, [line])
    assert det.by_remote == {"203.0.113.5": 3}


def test_pam_more_failures_with_the_sshd_lines() -> None:
    # a connection with three failed passwords on a system that logs both:
    # pam_unix logs the first failure, sshd every attempt, pam_unix the rest at the end
    det = AuthDetector()
    feed_all(det, [pam(), failed(), failed(), failed(), more(2)])
    assert det.by_remote == {"203.0.113.5": 3}
    assert det.by_user == {"root": 3}


def test_pam_more_failures_without_the_sshd_lines() -> None:
    det = AuthDetector()
    feed_all(det, [pam(), more(2)])
    assert det.by_remote == {"203.0.113.5": 3}


def test_repeated_sshd_lines_absorb_pam_more() -> None:
    det = AuthDetector()
    repeated = (
        f"{H} sshd[123]: message repeated 2 times: [ Failed password for root from "
        "203.0.113.5 port 52113 ssh2]"
    )
    feed_all(det, [pam(), failed(), repeated, more(2)])
    assert det.by_remote == {"203.0.113.5": 3}


def test_concurrent_connections_from_one_address() -> None:
    det = AuthDetector()
    lines = [pam(pid=1), pam(pid=2), failed(pid=2), failed(pid=1), failed(pid=1), more(1, pid=1)]
    feed_all(det, lines)
    assert det.by_remote == {"203.0.113.5": 3}


def test_pam_in_a_forked_child_matches_by_address() -> None:
    # keyboard-interactive: pam_unix runs in a child process with its own pid
    det = AuthDetector()
    kbd = f"{H} sshd[500]: Failed keyboard-interactive/pam for root from 203.0.113.5 port 1 ssh2"
    feed_all(det, [pam(pid=501), kbd])
    assert det.by_remote == {"203.0.113.5": 1}


def test_pam_host_name_matches_sshd_address_by_pid() -> None:
    # UseDNS yes: PAM's rhost is the host name, sshd logs the address
    det = AuthDetector()
    feed_all(det, [pam(addr="attacker.example.net"), failed(addr="203.0.113.5")])
    assert sum(det.by_remote.values()) == 1


def test_publickey_failures_do_not_absorb_pam_lines() -> None:
    det = AuthDetector()
    pk = f"{H} sshd[123]: Failed publickey for root from 203.0.113.5 port 1 ssh2: RSA SHA256:x"
    feed_all(det, [pk, pam(), failed()])
    assert det.by_remote == {"203.0.113.5": 2}


def test_credits_expire() -> None:
    det = AuthDetector(credit_ttl=60.0)
    det.feed(pam(), 1000.0)
    det.feed(failed(), 1000.0 + 61)
    assert det.by_remote == {"203.0.113.5": 2}


def test_credits_match_only_the_same_syslog_host() -> None:
    det = AuthDetector()
    other_host = failed().replace("web-01", "web-02")
    feed_all(det, [pam(), other_host])
    assert det.by_remote == {"203.0.113.5": 2}


def test_unknown_user_from_pam_is_named_by_sshd() -> None:
    det = AuthDetector()
    pam_unknown = PAM_NOUSER_FMT.format(h=H, pid=123, addr="203.0.113.5")
    sshd_invalid = (
        f"{H} sshd[123]: Failed password for invalid user admin from 203.0.113.5 port 1 ssh2"
    )
    feed_all(det, [pam_unknown, sshd_invalid])
    assert det.by_remote == {"203.0.113.5": 1}
    assert det.by_user == {"admin": 1}


def test_empty_rhost_is_not_counted() -> None:
    det = AuthDetector()
    console = (
        "Jul 11 11:33:13 combo gdm(pam_unix)[2803]: authentication failure; logname= uid=0 "
        "euid=0 tty=:0 ruser= rhost= "
    )
    assert det.feed(console, 1.0) == []
    assert det.by_remote == {}
    assert det.by_user == {}


# -- brute force


def test_brute_force_finding_once_per_crossing() -> None:
    det = AuthDetector(threshold=5, window=60.0)
    findings: list[Finding] = []
    for i in range(12):
        findings += det.feed(failed(pid=1000 + i, user=f"u{i % 3}"), 100.0 + i)
    assert len(findings) == 1
    (finding,) = findings
    assert finding.detector == "auth"
    assert finding.severity == "high"
    assert finding.fields["remote"] == "203.0.113.5"
    assert finding.fields["count"] == 5
    assert finding.fields["window"] == 60.0
    assert set(finding.fields["users"]) == {"u0", "u1", "u2"}
    # another address is tracked on its own
    for i in range(5):
        findings += det.feed(failed(addr="198.51.100.1", pid=2000 + i), 120.0 + i)
    assert [f.fields["remote"] for f in findings] == ["203.0.113.5", "198.51.100.1"]


def test_brute_force_again_after_dropping_below() -> None:
    det = AuthDetector(threshold=5, window=60.0)
    findings: list[Finding] = []
    for i in range(5):
        findings += det.feed(failed(pid=i), 100.0 + i)
    assert len(findings) == 1
    # the window empties; a new burst is a new crossing
    for i in range(5):
        findings += det.feed(failed(pid=10 + i), 300.0 + i)
    assert len(findings) == 2


def test_brute_force_not_repeated_while_an_attacker_holds_the_rate() -> None:
    # one attempt every 13 s with threshold 5 in 60 s: the count in the window
    # hovers at the threshold; one finding, not one per attempt
    det = AuthDetector(threshold=5, window=60.0)
    findings: list[Finding] = []
    for i in range(50):
        findings += det.feed(failed(pid=i), 100.0 + 13 * i)
    assert len(findings) == 1


def test_brute_force_from_one_repeated_line() -> None:
    det = AuthDetector(threshold=10, window=300.0)
    line = (
        f"{H} sshd[123]: message repeated 25 times: [ Failed password for root from "
        "203.0.113.5 port 52113 ssh2]"
    )
    (finding,) = det.feed(line, 5.0)
    assert finding.fields["count"] == 25


def test_max_remotes_evicts_least_recently_seen() -> None:
    det = AuthDetector(max_remotes=2)
    det.feed(failed(addr="192.0.2.1"), 1.0)
    det.feed(failed(addr="192.0.2.2"), 2.0)
    det.feed(failed(addr="192.0.2.1"), 3.0)
    det.feed(failed(addr="192.0.2.3"), 4.0)
    assert det.by_remote == {"192.0.2.1": 2, "192.0.2.3": 1}
    det.feed(failed(addr="192.0.2.2"), 5.0)  # its counter restarts
    assert det.by_remote == {"192.0.2.3": 1, "192.0.2.2": 1}


def test_auth_snapshot_restore_round_trip() -> None:
    det = AuthDetector(threshold=3, window=60.0)
    feed_all(det, [pam(), failed(addr="198.51.100.2", pid=7), failed(addr="198.51.100.2", pid=8)])
    data = msgpack.unpackb(msgpack.packb(det.snapshot()))
    data = json.loads(json.dumps(data))
    again = AuthDetector.restore(data, threshold=3, window=60.0)
    assert again.by_remote == det.by_remote == {"203.0.113.5": 1, "198.51.100.2": 2}
    assert again.by_user == det.by_user
    # the outstanding PAM credit survives: sshd's line for that attempt does not count again
    again.feed(failed(), 1010.0)
    assert again.by_remote["203.0.113.5"] == 1
    # the window survives: one more failure crosses the threshold
    (finding,) = again.feed(failed(addr="198.51.100.2", pid=9), 1011.0)
    assert finding.fields["count"] == 3


def test_auth_restore_of_garbage_gives_a_fresh_detector() -> None:
    for data in ({}, {"version": 99}, {"version": 1, "remotes": "x"}, {"version": 1}):
        det = AuthDetector.restore(data, threshold=10, window=300.0)
        assert det.by_remote == {}


def test_linux_2k_counts_match_the_structured_csv() -> None:
    log = LOGHUB / "Linux_2k.log"
    structured = LOGHUB / "Linux_2k.log_structured.csv"
    expected: Counter[str] = Counter()
    with structured.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["Component"] != "sshd(pam_unix)":
                continue
            if not row["EventTemplate"].startswith("authentication failure;"):
                continue
            rhost = re.search(r"rhost=(\S*)", row["Content"])
            if rhost is not None and rhost.group(1):
                expected[rhost.group(1)] += 1
    assert sum(expected.values()) > 100

    prefilter = [re.compile(p.encode()) for p in AuthDetector.PREFILTER]
    det = AuthDetector()
    with log.open("rb") as f:
        for i, raw in enumerate(f):
            if any(p.search(raw) for p in prefilter):
                det.feed(raw.decode("utf-8", "surrogateescape"), 1_000_000.0 + i)
    assert det.by_remote == dict(expected)


# -- volume spikes


def steady(det: VolumeDetector, minutes: int, per_minute: int, start: float = 0.0) -> float:
    """Feed `per_minute` lines a minute in six reads; return the next minute's start."""
    t = start
    for _ in range(minutes):
        for k in range(6):
            assert (
                det.observe("app.log", per_minute // 6 + (per_minute % 6 if k == 0 else 0), t) == []
            )
            t += 10.0
    return t


def test_volume_spike_after_learning() -> None:
    det = VolumeDetector(factor=3.0, min_lines=100, learn_minutes=30)
    t = steady(det, 40, 50)
    findings: list[Finding] = []
    for k in range(10):
        findings += det.observe("app.log", 50, t + 5 * k)
    (finding,) = findings
    assert finding.detector == "volume"
    assert finding.severity == "medium"
    assert finding.fields["file"] == "app.log"
    assert finding.fields["lines_per_minute"] > 150
    assert finding.fields["baseline"] == pytest.approx(50.0)
    # back to normal: no more findings
    assert steady(det, 5, 50, start=t + 60.0) > 0


def test_volume_below_factor_is_no_spike() -> None:
    det = VolumeDetector()
    t = steady(det, 40, 50)
    assert det.observe("app.log", 120, t) == []
    steady(det, 3, 50, start=t + 60.0)


def test_volume_not_before_learn_minutes() -> None:
    det = VolumeDetector(learn_minutes=30)
    t = steady(det, 10, 50)
    assert det.observe("app.log", 5000, t) == []


def test_volume_needs_min_lines() -> None:
    det = VolumeDetector(min_lines=100, learn_minutes=5)
    t = steady(det, 10, 6)
    assert det.observe("app.log", 99, t) == []


def test_volume_idle_minutes_count_as_zero() -> None:
    det = VolumeDetector(learn_minutes=5)
    t = steady(det, 10, 60)
    # an hour without a call: the baseline falls towards zero
    baseline = det.baseline("app.log")
    det.observe("app.log", 0, t + 3600.0)
    after = det.baseline("app.log")
    assert baseline is not None and after is not None and after < baseline / 10


def test_volume_files_are_separate() -> None:
    det = VolumeDetector(learn_minutes=5)
    for minute in range(10):
        assert det.observe("quiet.log", 1, minute * 60.0) == []
        assert det.observe("busy.log", 1000, minute * 60.0 + 1) == []
    assert det.observe("busy.log", 1000, 600.0) == []
    assert [f.fields["file"] for f in det.observe("quiet.log", 500, 600.0)] == ["quiet.log"]


def test_volume_snapshot_restore_keeps_the_baseline() -> None:
    det = VolumeDetector()
    t = steady(det, 40, 50)
    again = VolumeDetector.restore(json.loads(json.dumps(det.snapshot())), 3.0, 100, 30)
    assert again.baseline("app.log") == pytest.approx(50.0)
    # the minute after a restart may hold a backlog: not a spike
    assert again.observe("app.log", 5000, t + 600.0) == []
    # a later spike is
    t = steady(again, 2, 50, start=t + 660.0)
    assert len(again.observe("app.log", 500, t)) == 1


def test_volume_first_minute_backlog_is_not_learned() -> None:
    det = VolumeDetector(learn_minutes=30)
    det.observe("app.log", 100_000, 30.0)  # the file's backlog, read at start
    t = steady(det, 40, 50, start=60.0)
    assert det.baseline("app.log") == pytest.approx(50.0)
    assert len(det.observe("app.log", 500, t)) == 1


# -- templates and new error signatures


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "Nov 26 10:00:00 web-01 app[123]: ERROR request 4711 from 10.0.0.1:5050 failed "
            "after 0.25s (id 550e8400-e29b-41d4-a716-446655440000)",
            "Dec  1 23:59:59 web-01 app[9876]: ERROR request 12 from 192.168.1.200:443 failed "
            "after 13.5s (id 123e4567-e89b-12d3-a456-426614174000)",
        ),
        (
            "2026-11-26T10:00:00.123456+00:00 db kernel: EXT4-fs error (device sda1): "
            "ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0",
            "2026-12-01T11:11:11+01:00 db kernel: EXT4-fs error (device sda1): "
            "ext4_find_entry:1455: inode #96: comm ls: reading directory lblock 12",
        ),
        (
            "[Sun Dec 04 04:47:44 2005] [error] [client 222.166.160.184] Directory index "
            "forbidden by rule: /var/www/html/",
            "[Mon Dec 05 19:14:11 2005] [error] [client 61.138.216.82] Directory index "
            "forbidden by rule: /srv/www/",
        ),
        (
            "2015-07-29 19:03:35,413 - ERROR [LearnerHandler-/10.10.34.11:52225:"
            "LearnerHandler@562] - Unexpected exception causing shutdown",
            "2015-07-30 08:01:02,001 - ERROR [LearnerHandler-/10.10.34.13:57354:"
            "LearnerHandler@562] - Unexpected exception causing shutdown",
        ),
        (
            'level=error msg="upstream timed out" session=0x14ede63a5a70000 peer=2001:db8::7',
            'level=error msg="connection reset" session=0xdeadbeef peer=fe80::1ff:fe23:4567:890a',
        ),
        (
            "ERROR blk_-1608999687919862906 replica lost, key ab12cd34ef56",
            "ERROR blk_7503483334202473044 replica lost, key 9f8e7d6c5b4a",
        ),
    ],
)
def test_template_masks_variable_parts(a: str, b: str) -> None:
    assert template(a) == template(b)


def test_template_examples() -> None:
    assert (
        template(
            "Nov 26 10:00:00 web-01 sshd[123]: error: connect to 203.0.113.5 port 22 failed "
            "for '/etc/ssh/key' in /var/lib/x.db"
        )
        == "sshd: error: connect to <ip> port <num> failed for <str> in <path>"
    )
    assert template("2026-11-26 10:00:00 worker 0xdeadbeef at https://example.com/a?b=1") == (
        "<ts> worker <hex> at <url>"
    )


def test_template_keeps_different_messages_apart() -> None:
    assert template("ERROR disk full on /var") != template("ERROR disk missing on /var")
    assert template("Nov 26 10:00:00 h app[1]: ERROR x") != template(
        "Nov 26 10:00:00 h other[1]: ERROR x"
    )


@pytest.mark.parametrize(
    "line",
    [
        "2015-07-29 19:03:35,413 - ERROR [main] - boom",
        "FATAL: could not open file",
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
        "[Sun Dec 04 04:47:44 2025] [proxy_fcgi:error] [pid 1] AH01071: Got error",
        "2026/11/26 10:00:00 [crit] 123#0: *1 open() failed",
        'time=2026-11-26T10:00:00Z level=error msg="boom"',
        '{"level":"error","msg":"boom"}',
        '{"level": "fatal", "msg": "boom"}',
        "E1126 10:00:00.000000    1234 controller.go:12] sync failed",
        "SEVERE: Servlet.service() threw exception",
        "Jun 15 04:06:20 combo logrotate: ALERT exited abnormally with [1]",
        "kernel: PANIC: early exception",
    ],
)
def test_error_pattern_finds_error_lines(line: str) -> None:
    assert re.search(ERROR_PATTERN, line)
    assert re.search(ERROR_PATTERN.encode(), line.encode())


@pytest.mark.parametrize(
    "line",
    [
        "081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906",
        "2015-07-29 17:41:44,747 - INFO  [main:QuorumPeerConfig@101] - Reading configuration",
        "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.conf",
        'level=info msg="no errors" errors=0',
        "Terror struck",
    ],
)
def test_error_pattern_skips_other_lines(line: str) -> None:
    assert re.search(ERROR_PATTERN, line) is None


def test_signature_first_occurrence_only() -> None:
    det = SignatureDetector()
    first = "2026-11-26 10:00:00,001 - ERROR [pool-1] - cannot reach 10.0.0.7:5432 after 3 tries"
    later = "2026-11-26 11:12:13,999 - ERROR [pool-1] - cannot reach 10.0.0.9:5432 after 12 tries"
    (finding,) = det.feed(first, "/var/log/app.log", 1.0)
    assert finding.detector == "new_error"
    assert finding.severity == "medium"
    assert finding.fields == {
        "template": template(first),
        "file": "/var/log/app.log",
        "line": first,
        "rule": None,
    }
    assert det.feed(later, "/var/log/app.log", 2.0) == []
    assert det.feed(later, "/var/log/other.log", 3.0) == []  # per host, not per file
    assert len(det.feed("2026-11-26 10:00:00,001 - ERROR [x] - other", "a", 4.0)) == 1

    again = SignatureDetector.restore(msgpack.unpackb(msgpack.packb(det.snapshot())), 4096)
    assert again.feed(later, "/var/log/app.log", 5.0) == []
    assert len(again) == 2


def test_signature_carries_the_rule() -> None:
    det = SignatureDetector()
    line = "2015-07-29 INFO Got user-level KeeperException when processing sessionid:0x34ed9"
    (finding,) = det.feed(line, "zk.log", 1.0, rule="java_exception")
    assert finding.fields["rule"] == "java_exception"
    assert finding.fields["template"] == (
        "<num>-<num>-<num> INFO Got user-level KeeperException when processing sessionid:<hex>"
    )


def test_signature_stops_learning_when_full() -> None:
    det = SignatureDetector(max_templates=2)
    assert len(det.feed("ERROR alpha", "f", 1.0)) == 1
    assert len(det.feed("ERROR beta", "f", 1.0)) == 1
    assert det.feed("ERROR gamma", "f", 1.0) == []
    assert det.feed("ERROR gamma", "f", 1.0) == []
    assert det.feed("ERROR alpha", "f", 1.0) == []
    assert det.dropped == 2
    again = SignatureDetector.restore(det.snapshot(), max_templates=2)
    assert again.dropped == 2
    assert again.feed("ERROR beta", "f", 2.0) == []


def test_signature_templates_persist_compactly() -> None:
    det = SignatureDetector()
    for i in range(100):
        det.feed(f"ERROR message kind {chr(65 + i % 26)}{chr(65 + i // 26)}", "f", 1.0)
    data = det.snapshot()
    assert len(data["templates"]) == 100
    assert all(isinstance(h, int) and 0 <= h < 2**64 for h in data["templates"])
    assert len(msgpack.packb(data)) < 100 * 10 + 64


def test_signature_on_real_samples_is_bounded() -> None:
    det = SignatureDetector()
    findings = []
    error = re.compile(ERROR_PATTERN)
    for i, line in enumerate((LOGHUB / "Apache_2k.log").read_text().splitlines()):
        if error.search(line):  # as the tailer does
            findings += det.feed(line, "Apache_2k.log", float(i))
    # 595 [error] lines, four kinds of message
    assert [f.fields["template"] for f in findings] == [
        "[<ts>] [error] mod_jk child workerEnv in error state <num>",
        "[<ts>] [error] [client <ip>] Directory index forbidden by rule: <path>",
        "[<ts>] [error] jk<num>_init() Can't find child <num> in scoreboard",
        "[<ts>] [error] mod_jk child init <num> <num>",
    ]


def _template_unguarded(line: str) -> str:
    """template() as it was, every mask on every line: the reference for its shortcuts."""
    text = line[: detectors_module._TEMPLATE_MAX_CHARS].rstrip("\r\n")
    header = detectors_module._SYSLOG.match(text)
    if header is not None:
        module = f"({header['module']})" if header["module"] is not None else ""
        text = f"{header['prog']}{module}: {header['msg']}"
    for pattern, mask, _ in detectors_module._MASKS:
        text = pattern.sub(mask, text)
    text = detectors_module._IPV6_CANDIDATE.sub(detectors_module._ipv6, text)
    text = detectors_module._PATH.sub("<path>", text)
    text = detectors_module._HEX_ID.sub("<hex>", text)
    text = detectors_module._NUM.sub("<num>", text)
    return detectors_module._SPACE.sub(" ", text).strip()


def test_template_shortcuts_change_nothing_on_the_samples():
    for name in ("Linux_2k.log", "Apache_2k.log", "Zookeeper_2k.log", "HDFS_2k.log"):
        for line in (LOGHUB / name).read_text(errors="replace").splitlines():
            assert template(line) == _template_unguarded(line)


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list(" :/.-'\"0123456789abcdefxX<>[]=_\\Tfe80:")), max_size=60)
)
def test_template_shortcuts_change_nothing_on_generated_lines(line):
    assert template(line) == _template_unguarded(line)
