"""The new-error-signature detector: templates, the error-line patterns,
and the detector on literal lines and the Loghub samples."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.logs.detectors import signatures as signatures_module
from collectors.logs.detectors.base import ERROR_PATTERN
from collectors.logs.detectors.signatures import SignatureDetector, template
from collectors.logs.detectors.syslog import SYSLOG

LOGHUB = Path(__file__).parents[3] / "fixtures" / "loghub"  # copies of ../shared/data/loghub


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
    text = line[: signatures_module._TEMPLATE_MAX_CHARS].rstrip("\r\n")
    header = SYSLOG.match(text)
    if header is not None:
        module = f"({header['module']})" if header["module"] is not None else ""
        text = f"{header['prog']}{module}: {header['msg']}"
    for pattern, mask, _ in signatures_module._MASKS:
        text = pattern.sub(mask, text)
    text = signatures_module._IPV6_CANDIDATE.sub(signatures_module._ipv6, text)
    text = signatures_module._PATH.sub("<path>", text)
    text = signatures_module._HEX_ID.sub("<hex>", text)
    text = signatures_module._NUM.sub("<num>", text)
    return signatures_module._SPACE.sub(" ", text).strip()


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
