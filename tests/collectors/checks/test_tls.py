"""The tls probe against a real nginx serving openssl-made certificates
(valid, expiring in 5 days, expired, for another name); the certificate
helpers with literal inputs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest

from agent.core.schema import build
from collectors.checks import certs as cert_helpers
from collectors.checks.model import Outcome, ProbeContext
from collectors.checks.tls import TlsCheck
from tests.collectors.checks.certs import Certs
from tests.collectors.checks.nginx import Nginx, free_ports

SECONDS = 1 / 86400


def check(**data: Any) -> TlsCheck:
    return build(TlsCheck, {"name": "cert", "type": "tls", **data}, "test.toml")


def run_probe(cfg: TlsCheck, nginx: Nginx | None = None) -> Outcome:
    async def main() -> Outcome:
        outcome = await cfg.probe(ProbeContext())
        if nginx is not None:
            await nginx.disconnected()
        return outcome

    return asyncio.run(main())


# -- helpers, pure ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "names", "expected"),
    [
        ("localhost", ["localhost"], True),
        ("LocalHost.", ["localhost"], True),
        ("www.example.com", ["example.com", "*.example.com"], True),
        ("example.com", ["*.example.com"], False),  # a wildcard is one whole label
        ("a.b.example.com", ["*.example.com"], False),
        ("www.example.com", ["w*.example.com"], False),  # no partial wildcards
        ("127.0.0.1", ["127.0.0.1"], True),
        ("127.0.0.1", ["127.0.0.2", "localhost"], False),
        ("::1", ["0:0::1"], True),
        ("[::1]", ["::1"], True),
        ("127.0.0.1", ["*.0.0.1"], False),  # an IP only matches an IP SAN
        ("example.com", [], False),
    ],
)
def test_matches(host: str, names: list[str], expected: bool) -> None:
    assert cert_helpers.matches(host, names) is expected


def test_parse(certs: Certs) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = certs.cert("wrong_name").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    not_after = certs.not_after("wrong_name")
    info = cert_helpers.parse(der, now=not_after.timestamp() - 1.5 * 86400)
    assert info.days_left == 1.5
    assert info.names == ("wrong.example", "*.other.example")
    assert info.fields() == {
        "subject": "CN=wrong_name test server",
        "issuer": "CN=vigil test CA",
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert cert_helpers.parse(der, now=not_after.timestamp() + 86400).days_left == -1


# -- against nginx ------------------------------------------------------------------------


def probe_kind(nginx: Nginx, certs: Certs, kind: str, **data: Any) -> tuple[Outcome, float]:
    """The outcome, and the days left the test computes from the certificate."""
    data.setdefault("ca_file", str(certs.ca))
    outcome = run_probe(check(address=nginx.address(kind), **data), nginx)
    return outcome, certs.days_left(kind, datetime.now(timezone.utc))


def test_valid(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_kind(nginx, certs, "valid", server_name="localhost")
    assert (outcome.ok, outcome.status) == (True, "ok")
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert int(outcome.cert_expiry_days) == int(days) == 89
    when = certs.not_after("valid")
    assert outcome.message == (
        f"certificate expires in {outcome.cert_expiry_days:.1f} days "
        f"({when.strftime('%Y-%m-%d %H:%M')} UTC)"
    )
    assert dict(outcome.cert) == {
        "subject": "CN=valid test server",
        "issuer": "CN=vigil test CA",
        "not_after": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert 0 < outcome.latency < 2


def test_the_host_is_the_default_server_name(nginx: Nginx, certs: Certs) -> None:
    """127.0.0.1 is in the certificate's IP SANs."""
    outcome, _ = probe_kind(nginx, certs, "valid")
    assert outcome.ok, outcome.message


def test_expiring_in_5_days_is_ok(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_kind(nginx, certs, "expiring", server_name="localhost")
    assert outcome.ok
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert outcome.cert_expiry_days == pytest.approx(5, abs=0.01)


def test_expired_fails_with_negative_days(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_kind(nginx, certs, "expired", server_name="localhost")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "certificate has expired (3.0 days ago)"
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert outcome.cert_expiry_days == pytest.approx(-3, abs=0.01)
    assert outcome.cert["subject"] == "CN=expired test server"


def test_wrong_name_fails_with_hostname_mismatch(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_kind(nginx, certs, "wrong_name", server_name="localhost")
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == "hostname mismatch: certificate is for wrong.example, *.other.example"
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_server_name_matching_a_wildcard(nginx: Nginx, certs: Certs) -> None:
    outcome, _ = probe_kind(nginx, certs, "wrong_name", server_name="api.other.example")
    assert outcome.ok, outcome.message


def test_unknown_issuer(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_kind(nginx, certs, "valid", ca_file="")
    assert outcome.message == "certificate issuer is unknown (not in the trusted CAs)"
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)


def test_verify_tls_false_reports_without_judging(nginx: Nginx, certs: Certs) -> None:
    outcome, days = probe_kind(nginx, certs, "expired", verify_tls=False, ca_file="")
    assert outcome.ok
    assert outcome.cert_expiry_days == pytest.approx(days, abs=5 * SECONDS)
    assert outcome.message.startswith("certificate expired 3.0 days ago (")
    assert outcome.message.endswith("), not verified")
    outcome, _ = probe_kind(
        nginx, certs, "wrong_name", verify_tls=False, ca_file="", server_name="localhost"
    )
    assert outcome.ok
    assert outcome.message.endswith(
        ", not verified; it is for wrong.example, *.other.example, not localhost"
    )


def test_refused() -> None:
    port = free_ports(1)[0]
    outcome = run_probe(check(address=f"127.0.0.1:{port}"))
    assert (outcome.ok, outcome.status) == (False, "critical")
    assert outcome.message == f"connection refused by 127.0.0.1:{port}"
    assert outcome.cert_expiry_days is None


def test_not_a_tls_server(nginx: Nginx) -> None:
    outcome = run_probe(check(address=f"127.0.0.1:{nginx.http_port}"), nginx)
    assert not outcome.ok
    assert outcome.message.startswith("TLS handshake failed: ")


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word; its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


def test_silent_server_times_out() -> None:
    async def main() -> Outcome:
        async with silent_server() as port:
            cfg = check(address=f"127.0.0.1:{port}", timeout="500ms")
            return await cfg.probe(ProbeContext())

    outcome = asyncio.run(main())
    assert (outcome.ok, outcome.message) == (False, "timed out after 0.5s")
    assert outcome.latency == pytest.approx(0.5, abs=0.25)
