"""Who may see the pages: the read API's rule (hub/auth.py), plus a login
form for browsers.

- With a read token: `Authorization: Bearer TOKEN`, or the session cookie
  the login form sets. The cookie holds HMAC-SHA256(token, a fixed
  context), never the token itself; it is compared in constant time, and
  a new read token (SIGHUP) changes the value, so old cookies stop working.
  It is HttpOnly, SameSite=Strict, Path=/ (and Secure when the hub serves
  HTTPS), and lasts the browser session.
- Without one (allowed by the config only when the hub listens on
  loopback), a page is served only to a local request, as the read API
  (hub/auth.py `local`).
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from hub.auth import read_allowed

COOKIE = "vigil_session"
_CONTEXT = b"vigil hub web session v1"


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
