"""The TLS policy for everything that makes requests (the shipper, remote
notifiers, http checks), and the aiohttp session of the remote notifiers
(the shipper and the http checks use agent/core/h1.py).

aiohttp is imported on first use, so an agent with no remote notifier
never loads it. TLS contexts are cached per (verify,
ca_file): a ca_file replaces the system's trust store rather than adding to
it, and loading one reads the file, so `tls_context_async` does it off the
loop.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from agent import __version__

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = f"vigil/{__version__}"
_contexts: dict[tuple[bool, str], ssl.SSLContext] = {}


def tls_context(verify: bool = True, ca_file: str = "") -> ssl.SSLContext:
    """The cached client context; OSError (ssl.SSLError too) if ca_file is unreadable or not PEM."""
    key = (verify, ca_file if verify else "")
    ctx = _contexts.get(key)
    if ctx is None:
        if verify:
            ctx = ssl.create_default_context(cafile=ca_file or None)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx = _contexts.setdefault(key, ctx)
    return ctx


async def tls_context_async(verify: bool = True, ca_file: str = "") -> ssl.SSLContext:
    key = (verify, ca_file if verify else "")
    if key in _contexts:
        return _contexts[key]
    return await asyncio.to_thread(tls_context, verify, ca_file)


def client_session(
    *,
    timeout: float | None = None,
    limit: int = 1,
    tls: ssl.SSLContext | bool = True,
    force_close: bool = False,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientSession:
    """A session with our User-Agent, no cookie jar and a bounded pool.
    `timeout` is per request (None: set per request); `tls` the context
    (True: the system's trust store)."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        ssl=tls, limit=limit, limit_per_host=0, force_close=force_close
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        cookie_jar=aiohttp.DummyCookieJar(),
    )
