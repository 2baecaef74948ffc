"""Host tokens: a host's token is its host id and an HMAC-SHA256 of that id
under the hub's secret. The hub keeps no token list, checks a token before
reading a byte of the body, and refuses a batch whose host is not the
token's; one host can never write as another (docs/protocol.md)."""

from __future__ import annotations

import hashlib
import hmac

_TOKEN_CONTEXT = b"vigil host token v1\x00"


def host_token(host_id: str, secret: bytes) -> str:
    """HOST.MAC: the host id in clear, so the hub can check the token before
    reading a byte of the body, and the MAC that binds it to that host."""
    mac = hmac.new(secret, _TOKEN_CONTEXT + host_id.encode(), hashlib.sha256).hexdigest()
    return f"{host_id}.{mac}"


def token_host(token: str, secret: bytes) -> str | None:
    """The host id a token was issued for, or None if it is not genuine."""
    host_id, dot, _ = token.rpartition(".")
    if not dot or not host_id:
        return None
    return host_id if hmac.compare_digest(host_token(host_id, secret), token) else None
