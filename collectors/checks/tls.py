"""The tls check: the certificate a TLS server presents, and whether it holds.

Connects to `address`, sends server_name (default: the host) as SNI and
reports the certificate's days left, subject, issuer and notAfter. Critical
when the connection or handshake fails within `timeout`, or, with
verify_tls (the default), when the certificate does not verify: expired, not
yet valid, for another name ("hostname mismatch: certificate is for ..."),
or from an unknown issuer. Its days left are reported even then, negative
for an expired one. With verify_tls = false nothing is judged, only reported.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

from agent.core.schema import opt
from collectors.checks import certs
from collectors.checks.config import CHECK_TYPES, CheckConfig, check_address, host_port
from collectors.checks.model import Outcome, ProbeContext


@CHECK_TYPES.register("tls")
@dataclass(frozen=True, kw_only=True)
class TlsCheck(CheckConfig):
    address: str = opt(check=check_address)
    verify_tls: bool = True
    ca_file: str = ""  # PEM bundle to verify against instead of the system's
    server_name: str = ""  # SNI and the name to verify; default: the host

    async def probe(self, ctx: ProbeContext) -> Outcome:
        start = time.monotonic()
        name = self.server_name or host_port(self.address)[0]

        def fail(message: str, info: certs.CertInfo | None = None) -> Outcome:
            return Outcome(
                ok=False,
                status="critical",
                message=message,
                latency=time.monotonic() - start,
                cert_expiry_days=info.days_left if info else None,
                cert=info.fields() if info else {},
            )

        host, port = host_port(self.address)
        try:
            _, writer, info = await asyncio.wait_for(
                certs.open_tls(host, port, name, self.verify_tls, self.ca_file), self.timeout
            )
        except asyncio.TimeoutError:
            return fail(f"timed out after {self.timeout:g}s")
        except certs.CertificateInvalid as err:
            return fail(err.message, err.info)
        except certs.CaFileError as err:
            return fail(str(err))
        except ConnectionRefusedError:
            return fail(f"connection refused by {self.address}")
        except ssl.SSLError as err:
            return fail(certs.handshake_error(err))
        except OSError as err:
            return fail(f"cannot connect to {self.address}: {err.strerror or err}")
        latency = time.monotonic() - start
        await certs.close(writer)
        if info is None:
            return fail("the server presented no certificate")
        return Outcome(
            ok=True,
            status="ok",
            message=describe(info, name, self.verify_tls),
            latency=latency,
            cert_expiry_days=info.days_left,
            cert=info.fields(),
        )


def describe(info: certs.CertInfo, server_name: str, verified: bool) -> str:
    """The message of a good handshake."""
    when = info.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if info.days_left < 0:
        text = f"certificate expired {-info.days_left:.1f} days ago ({when})"
    else:
        text = f"certificate expires in {info.days_left:.1f} days ({when})"
    if not verified:
        text += ", not verified"
        if not certs.matches(server_name, info.names):
            text += f"; it is for {', '.join(info.names) or 'no name'}, not {server_name}"
    return text
