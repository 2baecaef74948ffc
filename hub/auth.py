"""Who may talk to the hub.

Host tokens: a host's token is its host id and an HMAC-SHA256 of that id
under the hub's secret. The hub keeps no token list, checks a token before
reading a byte of the body, and refuses a batch whose host is not the
token's; one host can never write as another (docs/protocol.md).

The read API takes one shared bearer token, or none when the hub listens
on loopback only (hub/config.py enforces that). Without one, a read must
also come from this machine, name a loopback host in `Host` and carry
none of the headers proxies add (`local`): a proxy in front of an open
hub, or a web page whose DNS name rebinds to 127.0.0.1, gets 403, not the
fleet. A proxy that adds no such header and rewrites Host to 127.0.0.1
cannot be told apart: behind a proxy, set a read token."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

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


@dataclass(frozen=True)
class Keys:
    """The secrets a host token may be signed with: the current one and,
    while a rotation's grace lasts, the previous one (docs/hub.md)."""

    current: bytes
    previous: bytes | None = None
    previous_until: float = 0.0  # Unix time the previous secret stops counting

    def host(self, authorization: str, now: float) -> tuple[str | None, bool]:
        """The host the header proves, and whether only the previous secret
        proved it."""
        host = bearer_host(authorization, self.current)
        if host is not None or self.previous is None or now >= self.previous_until:
            return host, False
        host = bearer_host(authorization, self.previous)
        return host, host is not None


GRACE_FILE = "previous_secret.json"


def previous_until(data_dir: Path, previous: bytes, grace: float, now: float) -> float:
    """When `previous` stops being accepted: `grace` after the first start
    or reload that read it. That first time is kept in data_dir, so neither
    a restart nor a reload extends the grace; a different previous secret
    starts a new one. Only a hash of the secret is written."""
    fingerprint = hashlib.sha256(b"vigil previous secret\x00" + previous).hexdigest()
    path = data_dir / GRACE_FILE
    try:
        kept = json.loads(path.read_text())
        since = float(kept["since"])
        # a start in the future (the clock was ahead then) or not a number is
        # noted anew from now, below, so the grace cannot slide along
        if kept["fingerprint"] == fingerprint and math.isfinite(since) and since <= now:
            return since + grace
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: the grace starts now
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"fingerprint": fingerprint, "since": now}))
        f.flush()
        os.fsync(f.fileno())  # a power cut must not leave an empty file (a new grace)
    os.replace(tmp, path)
    return now + grace


def read_secret(path: Path) -> bytes:
    """A secret file's secret; OSError, or ValueError when it is too short."""
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET:
        raise ValueError(f"{path}: the hub secret must be at least {MIN_SECRET} bytes")
    return secret


MIN_SECRET = 16  # bytes


def read_allowed(authorization: str, read_token: str | None) -> bool:
    if read_token is None:  # allowed by config only on loopback; callers check local()
        return True
    given = authorization.encode("utf-8", "surrogateescape")
    return secrets.compare_digest(given, f"Bearer {read_token}".encode())


def may_read(request: web.BaseRequest, read_token: str | None) -> bool:
    """The read API's rule (the module's docstring)."""
    if read_token is None:
        return local(request)
    return read_allowed(request.headers.get("Authorization", ""), read_token)


LOCAL_NAMES = ("localhost", "localhost.")


def local(request: web.BaseRequest) -> bool:
    """From this machine, for this machine, through no proxy."""
    if any(_proxied(name) for name in request.headers):
        return False
    return _loopback(request.remote or "") and _loopback(_host_name(request.host))


# what proxies add (nginx's X-Real-IP, Via, RFC 7239, the X-Forwarded-* family,
# CDNs'): a proxy that adds none of them cannot be told from a local client
PROXY_HEADERS = ("forwarded", "via", "x-real-ip", "cf-connecting-ip", "true-client-ip")


def _proxied(header: str) -> bool:
    name = header.lower()
    return name in PROXY_HEADERS or name.startswith("x-forwarded-")


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


def load_secret(config: HubConfig) -> bytes:
    """The token-signing secret: `secret_file`, or one made on first start
    in the data directory (mode 0600) and kept."""
    path = config.hub.secret_file or config.hub.data_dir / "hub.secret"
    if not path.exists() and config.hub.secret_file is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return read_secret(path)


def load_keys(config: HubConfig, now: float) -> Keys:
    """The current secret (made on first start if need be) and, during a
    rotation, the previous one with its grace. OSError or ValueError."""
    hub = config.hub
    if hub.previous_secret_file is None:
        return Keys(load_secret(config))
    current, previous = load_secret(config), read_secret(hub.previous_secret_file)
    if previous == current:
        raise ValueError(f"{hub.previous_secret_file}: the same secret as the current one")
    until = previous_until(hub.data_dir, previous, hub.previous_secret_grace, now)
    return Keys(current, previous, until)


def load_read_token(config: HubConfig) -> str | None:
    path = config.hub.read_token_file
    token = Path(path).read_text().strip() if path else None
    if token == "":  # "Bearer " alone would pass
        raise ValueError(f"{path}: the read token file is empty")
    return token
