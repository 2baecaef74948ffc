"""The http check: one request, made the way a user makes it.

Critical when the request cannot be made (refused, DNS, TLS verification,
no complete answer within `timeout`), when the final status is not expected
(any 2xx unless expect_status lists codes; with follow_redirects = false a
3xx is the answer and must be listed), or when the body misses
body_contains / body_regex or holds body_not_contains. A good answer slower
than max_latency is a warning. For https the certificate of the server that
gave the final answer is reported: days left, subject, issuer, not_after.
The request is agent/core/h1.py's: a new connection for every run and hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agent.core import h1
from agent.core.schema import Duration, Invalid, check_http_url, check_regex, opt
from collectors.checks import certs
from collectors.checks.config import CHECK_TYPES, CheckConfig
from collectors.checks.model import Outcome, ProbeContext, Status


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
            async with h1.deadline(self.timeout):
                resp = await self._fetch(ctx, headers, data, ssl_ctx)
        except TimeoutError:
            return fail(f"timed out after {self.timeout:g}s")
        except ssl.SSLCertVerificationError as err:
            host, port = _where(err, self.url)
            info = await _cert_of(host, port, deadline)
            return fail(certs.failure(err, info), info)
        except socket.gaierror as err:
            return fail(f"DNS lookup of {_where(err, self.url)[0]} failed: {err.strerror or err}")
        except ConnectionRefusedError as err:
            return fail(f"connection refused by {_hostport(*_where(err, self.url))}")
        except ssl.SSLError as err:
            hop = _hostport(*_where(err, self.url))
            if getattr(err, "vigil_connected", False):  # after a good handshake
                return fail(
                    f"{hop}: TLS error: {(err.reason or str(err)).replace('_', ' ').lower()}"
                )
            return fail(f"{hop}: {certs.handshake_error(err)}")
        except OSError as err:
            hop = _hostport(*_where(err, self.url))
            return fail(f"cannot connect to {hop}: {err.strerror or err}")
        except h1.HttpError as err:
            return fail(str(err))
        except ValueError as err:  # a redirect to a URL we cannot follow, a header h11 refuses
            return fail(f"request failed: {err}")
        latency = time.monotonic() - start

        info = None
        if resp.peer_cert:  # https: the certificate of the server that gave the answer
            info = certs.parse(resp.peer_cert)
        status, message = evaluate(
            self,
            resp.status,
            _decode(resp.body, resp.charset),
            latency,
            location=resp.header("location") if 300 <= resp.status < 400 else "",
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

    async def _fetch(
        self, ctx: ProbeContext, headers: dict[str, str], data: bytes, tls: ssl.SSLContext
    ) -> h1.Response:
        async with ctx.connections:  # waiting for a free one counts in the timeout
            return await h1.fetch(
                self.method,
                self.url,
                headers=headers,
                body=data,
                tls=tls,
                follow_redirects=self.follow_redirects,
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


def _request_body(cfg: HttpCheck) -> tuple[dict[str, str], bytes]:
    headers = dict(cfg.headers)
    if cfg.body_json:
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return headers, cfg.body_json.encode()
    return headers, cfg.body.encode()


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


def _where(err: BaseException, url: str) -> tuple[str, int]:
    """The host and port a connection error is about: the hop that failed
    (h1.fetch notes it on the error), else the check's own URL."""
    hop = getattr(err, "vigil_url", url)
    _, host, port = h1.origin(hop)
    return host, port


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _cert_of(host: str | None, port: int | None, deadline: float) -> certs.CertInfo | None:
    """Read a certificate over a second, unverified handshake, in the time left."""
    left = deadline - time.monotonic()
    if not host or not port or left <= 0:
        return None
    with contextlib.suppress(asyncio.TimeoutError):
        return await asyncio.wait_for(certs.read_cert(host, port, host), left)
    return None
