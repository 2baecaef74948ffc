"""The dns probe through the system resolver: localhost from /etc/hosts, and
a name under the reserved .invalid TLD (RFC 6761), which never exists."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.core.schema import build
from collectors.checks import dns
from collectors.checks.dns import DnsCheck
from collectors.checks.model import Outcome, ProbeContext


def check(**data: Any) -> DnsCheck:
    return build(DnsCheck, {"name": "resolve", "type": "dns", **data}, "test.toml")


def run_probe(**data: Any) -> Outcome:
    return asyncio.run(check(**data).probe(ProbeContext()))


@pytest.mark.parametrize(
    ("expected", "answers", "missing"),
    [
        ((), ["127.0.0.1"], []),
        (("127.0.0.1",), ["127.0.0.1", "10.0.0.1"], []),
        (("10.0.0.2", "127.0.0.1"), ["127.0.0.1"], ["10.0.0.2"]),
        (("2001:DB8:0::1",), ["2001:db8::1"], []),  # compared as addresses
        (("not-an-address",), ["127.0.0.1"], ["not-an-address"]),
    ],
)
def test_missing(expected: tuple[str, ...], answers: list[str], missing: list[str]) -> None:
    assert dns.missing(expected, answers) == missing


def test_localhost_resolves_to_loopback() -> None:
    outcome = run_probe(query="localhost")
    assert (outcome.ok, outcome.status) == (True, "ok")
    assert outcome.message.startswith("localhost A ")
    assert "127.0.0.1" in outcome.message.removeprefix("localhost A ").split(", ")
    assert 0 <= outcome.latency < 2


def test_expected_addresses_present() -> None:
    assert run_probe(query="localhost", expect_addresses=["127.0.0.1"]).ok


def test_expected_address_missing() -> None:
    outcome = run_probe(query="localhost", expect_addresses=["127.0.0.1", "192.0.2.7"])
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message.startswith("localhost: 192.0.2.7 missing (got ")
    assert "127.0.0.1" in outcome.message


def test_a_name_that_does_not_exist() -> None:
    outcome = run_probe(query="no-such-host.invalid", timeout="5s")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message.startswith("no-such-host.invalid: ")
    assert outcome.cert_expiry_days is None


def test_an_address_of_the_other_family_is_no_answer() -> None:
    """An IPv4 literal has no AAAA answer (resolved without asking anyone)."""
    outcome = run_probe(query="127.0.0.1", record="AAAA")
    assert (outcome.ok, outcome.status) == (False, "critical")
