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

from collectors.checks import certs
from collectors.checks.config import CheckConfig
from collectors.checks.model import Outcome, ProbeContext


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


async def probe(cfg: CheckConfig, ctx: ProbeContext) -> Outcome:
    start = time.monotonic()
    name = cfg.server_name or cfg.host_port[0]

    def fail(message: str, info: certs.CertInfo | None = None) -> Outcome:
        return Outcome(
            ok=False,
            status="critical",
            message=message,
            latency=time.monotonic() - start,
            cert_expiry_days=info.days_left if info else None,
            cert=info.fields() if info else {},
        )

    host, port = cfg.host_port
    try:
        _, writer, info = await asyncio.wait_for(
            certs.open_tls(host, port, name, cfg.verify_tls, cfg.ca_file), cfg.timeout
        )
    except asyncio.TimeoutError:
        return fail(f"timed out after {cfg.timeout:g}s")
    except certs.CertificateInvalid as err:
        return fail(err.message, err.info)
    except certs.CaFileError as err:
        return fail(str(err))
    except ConnectionRefusedError:
        return fail(f"connection refused by {cfg.address}")
    except ssl.SSLError as err:
        return fail(certs.handshake_error(err))
    except OSError as err:
        return fail(f"cannot connect to {cfg.address}: {err.strerror or err}")
    latency = time.monotonic() - start
    await certs.close(writer)
    if info is None:
        return fail("the server presented no certificate")
    return Outcome(
        ok=True,
        status="ok",
        message=describe(info, name, cfg.verify_tls),
        latency=latency,
        cert_expiry_days=info.days_left,
        cert=info.fields(),
    )
