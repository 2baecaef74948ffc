"""Certificates of checked servers, shared by the http, tcp and tls probes.

`parse` turns the DER a server presented into what an operator reads:
days left (exact, may be negative), subject, issuer, notAfter and the
names it is valid for. `context` is the agent's TLS policy
(agent/core/http.py), cached per (verify_tls, ca_file). cryptography is
imported by `parse`, at the first certificate read, so loading the config
of a check does not load it.

When verification fails (expired, wrong name, unknown issuer) OpenSSL
gives up before we see the certificate, so `open_tls` and the http probe
read it again over an unverified handshake: an expired certificate then
still reports its (negative) days left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from agent.core.http import tls_context_async

# OpenSSL's X509_V_ERR_* codes that get a clearer message than its own text.
_HOSTNAME_MISMATCH = 62
_IP_ADDRESS_MISMATCH = 64
_MESSAGES = {
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "certificate is self-signed",
    19: "certificate chain ends in an untrusted self-signed certificate",
    20: "certificate issuer is unknown (not in the trusted CAs)",
    21: "certificate issuer is unknown (not in the trusted CAs)",
}


@dataclass(frozen=True)
class CertInfo:
    days_left: float  # (not_after - now) / 86400: negative once expired
    subject: str
    issuer: str
    not_after: datetime  # UTC
    names: tuple[str, ...]  # DNS names and IP addresses it is valid for

    def fields(self) -> dict[str, str]:
        """Outcome.cert."""
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat().replace("+00:00", "Z"),
        }


class CaFileError(Exception):
    """ca_file cannot be loaded (missing, unreadable, not PEM)."""


class CertificateInvalid(Exception):
    """Verification failed; `info` is the certificate read unverified, if that worked."""

    def __init__(self, message: str, info: CertInfo | None) -> None:
        super().__init__(message)
        self.message = message
        self.info = info


def parse(der: bytes, now: float | None = None) -> CertInfo:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    now = time.time() if now is None else now
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        # No SAN at all: OpenSSL falls back to the subject's CN, so we do too.
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names = [str(a.value) for a in cns]
    else:
        names = san.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return CertInfo(
        days_left=(not_after.timestamp() - now) / 86400,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=not_after,
        names=tuple(names),
    )


def matches(host: str, names: Iterable[str]) -> bool:
    """RFC 6125: an IP only matches an IP SAN; a wildcard is a whole leftmost
    label standing for exactly one label (*.example.com is not example.com)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    host = host.rstrip(".").lower()
    for name in names:
        if ip is not None:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(name) == ip:
                    return True
            continue
        name = name.rstrip(".").lower()
        if name == host:
            return True
        first, _, rest = host.partition(".")
        if name.startswith("*.") and first and rest and name[2:] == rest:
            return True
    return False


async def context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    """The cached context for these options; the first call loads the CA
    bundle in a thread (so a changed bundle is read again only on restart)."""
    try:
        return await tls_context_async(verify, ca_file)
    except OSError as err:  # ssl.SSLError too: not PEM
        raise CaFileError(f"cannot load ca_file {ca_file}: {err.strerror or err}") from err


def peer_der(ssl_object: object) -> bytes | None:
    """The leaf certificate of a handshake, verified or not."""
    if not isinstance(ssl_object, (ssl.SSLObject, ssl.SSLSocket)):
        return None
    return ssl_object.getpeercert(binary_form=True)


def failure(err: ssl.SSLCertVerificationError, info: CertInfo | None) -> str:
    """A clear message for a failed verification."""
    code = err.verify_code
    if code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH):
        names = ", ".join(info.names) if info else "other names"
        return f"hostname mismatch: certificate is for {names or 'no name'}"
    message = _MESSAGES.get(code) or f"certificate verify failed: {err.verify_message}"
    if code == 10 and info is not None:
        message += f" ({-info.days_left:.1f} days ago)"
    return message


def handshake_error(err: ssl.SSLError) -> str:
    """ "TLS handshake failed: wrong version number", not OpenSSL's full line."""
    reason = (err.reason or "").replace("_", " ").lower()
    return f"TLS handshake failed: {reason or err}"


async def read_cert(host: str, port: int, server_name: str) -> CertInfo | None:
    """The certificate `host` presents, over an unverified handshake; None
    if it cannot be read. The caller bounds the time."""
    insecure = await context(False)
    try:
        _, writer = await asyncio.open_connection(
            host, port, ssl=insecure, server_hostname=server_name
        )
    except OSError:  # ssl.SSLError included
        return None
    try:
        der = peer_der(writer.get_extra_info("ssl_object"))
        return parse(der) if der else None
    finally:
        await close(writer)


async def open_tls(
    host: str, port: int, server_name: str, verify: bool, ca_file: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, CertInfo | None]:
    """Connect and handshake. A failed verification raises CertificateInvalid
    carrying the certificate read unverified; other errors are OSError."""
    ctx = await context(verify, ca_file)
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=server_name
        )
    except ssl.SSLCertVerificationError as err:
        info = await read_cert(host, port, server_name)
        raise CertificateInvalid(failure(err, info), info) from err
    der = peer_der(writer.get_extra_info("ssl_object"))
    return reader, writer, parse(der) if der else None


async def close(writer: asyncio.StreamWriter) -> None:
    """Close without waiting long on a peer that ignores TLS close_notify."""
    writer.close()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
