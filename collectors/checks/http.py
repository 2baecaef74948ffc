"""The http check: one request, made the way a user makes it.

Critical when the request cannot be made (refused, DNS, TLS verification,
no complete answer within `timeout`), when the final status is not expected
(any 2xx unless expect_status lists codes; with follow_redirects = false a
3xx is the answer and must be listed), or when the body misses
body_contains / body_regex or holds body_not_contains. A good answer slower
than max_latency is a warning. For https the certificate of the server that
gave the final answer is reported: days left, subject, issuer, not_after.
aiohttp is imported by the first probe, not with the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.core.schema import Duration, Invalid, check_http_url, check_regex, opt
from collectors.checks import certs
from collectors.checks.config import CHECK_TYPES, CheckConfig
from collectors.checks.model import Outcome, ProbeContext, Status

if TYPE_CHECKING:
    import aiohttp


def _check_status(value: int) -> str | None:
    return None if 100 <= value <= 599 else f"expected an HTTP status code 100-599, got {value}"


def _check_json(value: str) -> str | None:
    try:
        json.loads(value)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    return None


@CHECK_TYPES.register("http")
@dataclass(frozen=True, kw_only=True)
class HttpCheck(CheckConfig):
    url: str = opt(check=check_http_url)
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""  # sent as is
    body_json: str = opt("", check=lambda v: _check_json(v) if v else None)  # JSON text
    expect_status: tuple[int, ...] = opt((), each=_check_status)  # empty: any 2xx
    body_contains: str = ""
    body_not_contains: str = ""
    body_regex: str = opt("", check=lambda v: check_regex(v) if v else None)
    max_latency: Duration = opt(0.0, min=0.0)  # 0: no latency objective
    follow_redirects: bool = True
    verify_tls: bool = True
    ca_file: str = ""  # PEM bundle to verify against instead of the system's

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.body and self.body_json:
            raise Invalid("set body or body_json, not both", key="body_json")
        if urlsplit(self.url).scheme == "http" and self.ca_file:
            raise Invalid("ca_file needs an https:// url", key="ca_file")

    async def probe(self, ctx: ProbeContext) -> Outcome:
        import aiohttp

        start = time.monotonic()
        deadline = start + self.timeout

        def fail(
            message: str, info: certs.CertInfo | None = None, code: int | None = None
        ) -> Outcome:
            return Outcome(
                ok=False,
                status="critical",
                message=message,
                latency=time.monotonic() - start,
                status_code=code,
                cert_expiry_days=info.days_left if info else None,
                cert=info.fields() if info else {},
            )

        try:
            ssl_ctx = await certs.context(self.verify_tls, self.ca_file)
        except certs.CaFileError as err:
            return fail(str(err))
        headers, data = _request_body(self)
        try:
            with certs.recording() as handshakes:
                async with ctx.session().request(
                    self.method,
                    self.url,
                    headers=headers,
                    data=data,
                    allow_redirects=self.follow_redirects,
                    ssl=ssl_ctx,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as resp:
                    body = await resp.read()
        except asyncio.TimeoutError:
            return fail(f"timed out after {self.timeout:g}s")
        except aiohttp.ClientConnectorCertificateError as err:
            cause = err.certificate_error
            info = await _cert_of(err.host, err.port, deadline)
            if isinstance(cause, ssl.SSLCertVerificationError):
                return fail(certs.failure(cause, info), info)
            return fail(f"certificate of {err.host}:{err.port} rejected: {cause}", info)
        except aiohttp.ClientConnectorError as err:
            return fail(_connect_error(err))
        except aiohttp.TooManyRedirects as err:
            return fail(f"too many redirects (more than 10, last to {err.request_info.real_url})")
        except aiohttp.ServerDisconnectedError:
            return fail("server closed the connection without a complete answer")
        except aiohttp.ClientResponseError as err:
            return fail(f"invalid HTTP answer: {err.message}", code=err.status or None)
        except (aiohttp.ClientError, ValueError) as err:
            return fail(f"request failed: {str(err) or type(err).__name__}")
        latency = time.monotonic() - start

        info = None
        if resp.url.scheme == "https":
            # Every hop is a new connection (force_close): the last handshake
            # is the final answer's. Should none be seen, ask the server again.
            if handshakes:
                info = certs.parse(handshakes[-1])
            else:
                info = await _cert_of(resp.url.host, resp.url.port, deadline)
        status, message = evaluate(
            self,
            resp.status,
            _decode(body, resp.charset),
            latency,
            location=resp.headers.get("Location", "") if 300 <= resp.status < 400 else "",
        )
        return Outcome(
            ok=status == "ok",
            status=status,
            message=message,
            latency=latency,
            status_code=resp.status,
            cert_expiry_days=info.days_left if info else None,
            cert=info.fields() if info else {},
        )


def evaluate(
    cfg: HttpCheck, status: int, body: str, latency: float, location: str = ""
) -> tuple[Status, str]:
    """Judge a complete answer: ("ok", "") or the first thing wrong with it."""
    if cfg.expect_status and status not in cfg.expect_status:
        wanted = ", ".join(str(s) for s in cfg.expect_status)
    elif not cfg.expect_status and not 200 <= status < 300:
        wanted = "2xx"
    else:
        wanted = ""
    if wanted:
        moved = f" (redirect to {location} not followed)" if location else ""
        return "critical", f"status {status}{moved}, expected {wanted}"
    if cfg.body_contains and cfg.body_contains not in body:
        return "critical", f"body does not contain {cfg.body_contains!r}"
    if cfg.body_not_contains and cfg.body_not_contains in body:
        return "critical", f"body contains {cfg.body_not_contains!r}"
    if cfg.body_regex and not re.search(cfg.body_regex, body):
        return "critical", f"body does not match {cfg.body_regex!r}"
    if cfg.max_latency and latency > cfg.max_latency:
        return "warning", f"latency {latency:.3f}s over the {cfg.max_latency:g}s objective"
    return "ok", ""


def _request_body(cfg: HttpCheck) -> tuple[dict[str, str], str | None]:
    headers = dict(cfg.headers)
    if cfg.body_json:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return headers, cfg.body_json
    return headers, cfg.body or None


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def _connect_error(err: aiohttp.ClientConnectorError) -> str:
    import aiohttp

    where = f"{err.host}:{err.port}"
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup of {err.host} failed: {err.os_error.strerror or err.os_error}"
    if isinstance(err.os_error, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(err.os_error, ssl.SSLError):
        return f"{where}: {certs.handshake_error(err.os_error)}"
    return f"cannot connect to {where}: {err.os_error.strerror or err.os_error}"


async def _cert_of(host: str | None, port: int | None, deadline: float) -> certs.CertInfo | None:
    """Read a certificate over a second, unverified handshake, in the time left."""
    left = deadline - time.monotonic()
    if not host or not port or left <= 0:
        return None
    with contextlib.suppress(asyncio.TimeoutError):
        return await asyncio.wait_for(certs.read_cert(host, port, host), left)
    return None
