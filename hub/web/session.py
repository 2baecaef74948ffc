"""Who may see the pages: the read API's rule (hub/auth.py), plus a login
form for browsers.

- With a read token: `Authorization: Bearer TOKEN`, or the session cookie
  the login form sets. The cookie holds HMAC-SHA256(token, a fixed
  context), never the token itself; it is compared in constant time, and
  a new read token (SIGHUP) changes the value, so old cookies stop working.
  It is HttpOnly, SameSite=Strict, Path=/ (and Secure when the hub serves
  HTTPS), and lasts the browser session.
- Without one (allowed by the config only when the hub listens on
  loopback), a page is served only to a loopback peer that names a
  loopback host (127.0.0.1, [::1], localhost) in `Host`, through no proxy
  (no Forwarded or X-Forwarded-For header). So a proxy in front of an open
  hub, or a web page that rebinds its DNS name to 127.0.0.1, gets 403, not
  the fleet.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from aiohttp import web

from hub.auth import read_allowed

COOKIE = "vigil_session"
_CONTEXT = b"vigil hub web session v1"
LOCAL_NAMES = ("localhost", "localhost.")


def cookie_value(read_token: str) -> str:
    return hmac.new(read_token.encode(), _CONTEXT, hashlib.sha256).hexdigest()


def token_matches(given: str, read_token: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), read_token.encode("utf-8", "surrogateescape")
    )


def signed_in(request: web.Request, read_token: str) -> bool:
    """The request carries the read token, as a bearer token or as the cookie."""
    if read_allowed(request.headers.get("Authorization", ""), read_token):
        return True
    given = request.cookies.get(COOKIE, "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, cookie_value(read_token).encode())


def local(request: web.Request) -> bool:
    """From this machine, for this machine, through no proxy."""
    if "Forwarded" in request.headers or "X-Forwarded-For" in request.headers:
        return False
    return _loopback(request.remote or "") and _loopback(_host_name(request.host))


def _host_name(host: str) -> str:
    """The name in a Host header: without the port, without IPv6 brackets."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _loopback(name: str) -> bool:
    if name.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
