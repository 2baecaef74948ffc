"""The failed-login detector: literal lines for parsing and dedup; the real
Linux_2k.log sample (Loghub) for the per-remote counts, checked against its
structured CSV."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import msgpack
import pytest

from collectors.logs.detectors.auth import AuthDetector, AuthLine, parse_auth_line
from collectors.logs.detectors.base import Finding

LOGHUB = Path(__file__).parents[3] / "fixtures" / "loghub"  # copies of ../shared/data/loghub

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
    prefilter = [re.compile(p) for p in AuthDetector.patterns]
    findings: list[Finding] = []
    for i, line in enumerate(lines):
        assert any(p.search(line) for p in prefilter), line
        findings += det.feed(line, "auth.log", now + i)
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
    det.feed(pam(), "auth.log", 1000.0)
    det.feed(failed(), "auth.log", 1000.0 + 61)
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
    assert det.feed(console, "auth.log", 1.0) == []
    assert det.by_remote == {}
    assert det.by_user == {}


# -- brute force


def test_brute_force_finding_once_per_crossing() -> None:
    det = AuthDetector(threshold=5, window=60.0)
    findings: list[Finding] = []
    for i in range(12):
        findings += det.feed(failed(pid=1000 + i, user=f"u{i % 3}"), "auth.log", 100.0 + i)
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
        findings += det.feed(failed(addr="198.51.100.1", pid=2000 + i), "auth.log", 120.0 + i)
    assert [f.fields["remote"] for f in findings] == ["203.0.113.5", "198.51.100.1"]


def test_brute_force_again_after_dropping_below() -> None:
    det = AuthDetector(threshold=5, window=60.0)
    findings: list[Finding] = []
    for i in range(5):
        findings += det.feed(failed(pid=i), "auth.log", 100.0 + i)
    assert len(findings) == 1
    # the window empties; a new burst is a new crossing
    for i in range(5):
        findings += det.feed(failed(pid=10 + i), "auth.log", 300.0 + i)
    assert len(findings) == 2


def test_brute_force_not_repeated_while_an_attacker_holds_the_rate() -> None:
    # one attempt every 13 s with threshold 5 in 60 s: the count in the window
    # hovers at the threshold; one finding, not one per attempt
    det = AuthDetector(threshold=5, window=60.0)
    findings: list[Finding] = []
    for i in range(50):
        findings += det.feed(failed(pid=i), "auth.log", 100.0 + 13 * i)
    assert len(findings) == 1


def test_brute_force_from_one_repeated_line() -> None:
    det = AuthDetector(threshold=10, window=300.0)
    line = (
        f"{H} sshd[123]: message repeated 25 times: [ Failed password for root from "
        "203.0.113.5 port 52113 ssh2]"
    )
    (finding,) = det.feed(line, "auth.log", 5.0)
    assert finding.fields["count"] == 25


def test_max_remotes_evicts_least_recently_seen() -> None:
    det = AuthDetector(max_remotes=2)
    det.feed(failed(addr="192.0.2.1"), "auth.log", 1.0)
    det.feed(failed(addr="192.0.2.2"), "auth.log", 2.0)
    det.feed(failed(addr="192.0.2.1"), "auth.log", 3.0)
    det.feed(failed(addr="192.0.2.3"), "auth.log", 4.0)
    assert det.by_remote == {"192.0.2.1": 2, "192.0.2.3": 1}
    det.feed(failed(addr="192.0.2.2"), "auth.log", 5.0)  # its counter restarts
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
    again.feed(failed(), "auth.log", 1010.0)
    assert again.by_remote["203.0.113.5"] == 1
    # the window survives: one more failure crosses the threshold
    (finding,) = again.feed(failed(addr="198.51.100.2", pid=9), "auth.log", 1011.0)
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

    prefilter = [re.compile(p.encode()) for p in AuthDetector.patterns]
    det = AuthDetector()
    with log.open("rb") as f:
        for i, raw in enumerate(f):
            if any(p.search(raw) for p in prefilter):
                det.feed(raw.decode("utf-8", "surrogateescape"), "auth.log", 1_000_000.0 + i)
    assert det.by_remote == dict(expected)


# -- volume spikes
