"""Who may talk to the hub.

Host tokens: a host's token is its host id and an HMAC-SHA256 of that id
under the hub's secret. The hub keeps no token list, checks a token before
reading a byte of the body, and refuses a batch whose host is not the
token's; one host can never write as another (docs/protocol.md).

The read API takes one shared bearer token, or none when the hub listens
on loopback only (hub/config.py enforces that)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from agent.core.schema import check_host_id
from hub.config import HubConfig

_TOKEN_CONTEXT = b"vigil host token v1\x00"


def host_token(host_id: str, secret: bytes) -> str:
    """HOST.MAC: the host id in clear, so the hub can check the token before
    reading a byte of the body, and the MAC that binds it to that host."""
    mac = hmac.new(secret, _TOKEN_CONTEXT + host_id.encode(), hashlib.sha256).hexdigest()
    return f"{host_id}.{mac}"


def token_host(token: str, secret: bytes) -> str | None:
    """The host id a token was issued for, or None if it is not genuine.
    Compared as bytes: compare_digest refuses non-ASCII str, and a header
    may hold anything (a lone surrogate from undecodable bytes too)."""
    host_id, dot, _ = token.rpartition(".")
    if not dot or not host_id or check_host_id(host_id):
        return None
    given = token.encode("utf-8", "surrogateescape")
    return host_id if hmac.compare_digest(host_token(host_id, secret).encode(), given) else None


def bearer_host(authorization: str, secret: bytes) -> str | None:
    """The host an `Authorization: Bearer HOST.MAC` header proves, if any."""
    return token_host(authorization[7:], secret) if authorization.startswith("Bearer ") else None


def read_allowed(authorization: str, read_token: str | None) -> bool:
    if read_token is None:  # allowed by config only on loopback
        return True
    given = authorization.encode("utf-8", "surrogateescape")
    return secrets.compare_digest(given, f"Bearer {read_token}".encode())


def load_secret(config: HubConfig) -> bytes:
    """The token-signing secret: `secret_file`, or one made on first start
    in the data directory (mode 0600) and kept."""
    path = config.hub.secret_file or config.hub.data_dir / "hub.secret"
    if not path.exists() and config.hub.secret_file is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise ValueError(f"{path}: the hub secret must be at least 16 bytes")
    return secret


def load_read_token(config: HubConfig) -> str | None:
    path = config.hub.read_token_file
    token = Path(path).read_text().strip() if path else None
    if token == "":  # "Bearer " alone would pass
        raise ValueError(f"{path}: the read token file is empty")
    return token
