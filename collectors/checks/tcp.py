"""The tcp check: a connection, optionally TLS, optionally a short exchange.

Connects to `address`; with `tls` it then handshakes as the tls check does
(and reports the certificate's days left). With `send` the text is written
as is; with `expect` the answer is read until it contains that substring.
Critical when the connection is refused or fails, the TLS certificate does
not verify (unless verify_tls = false), the answer ends without the
expected text, or all this does not finish within `timeout`, which also
bounds a server that accepts and never answers.
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

# Reading stops here: an expected greeting is short, a stream is not.
MAX_ANSWER = 1 << 20


@CHECK_TYPES.register("tcp")
@dataclass(frozen=True, kw_only=True)
class TcpCheck(CheckConfig):
    address: str = opt(check=check_address)
    send: str = ""
    expect: str = ""  # a substring the answer must contain
    tls: bool = False  # a TLS handshake after connecting
    verify_tls: bool = True
    ca_file: str = ""  # PEM bundle to verify against instead of the system's
    server_name: str = ""  # SNI and the name to verify; default: the host

    async def probe(self, ctx: ProbeContext) -> Outcome:
        start = time.monotonic()
        deadline = start + self.timeout
        info: certs.CertInfo | None = None

        def result(message: str) -> Outcome:
            """ok when there is nothing to say, else critical."""
            return Outcome(
                ok=not message,
                status="critical" if message else "ok",
                message=message,
                latency=time.monotonic() - start,
                cert_expiry_days=info.days_left if info else None,
                cert=info.fields() if info else {},
            )

        try:
            reader, writer, info = await asyncio.wait_for(_connect(self), self.timeout)
        except asyncio.TimeoutError:
            return result(f"timed out after {self.timeout:g}s connecting")
        except certs.CertificateInvalid as err:
            info = err.info
            return result(err.message)
        except certs.CaFileError as err:
            return result(str(err))
        except ConnectionRefusedError:
            return result("connection refused")
        except ssl.SSLError as err:
            return result(certs.handshake_error(err))
        except OSError as err:
            return result(f"cannot connect to {self.address}: {err.strerror or err}")

        answer = bytearray()
        try:
            # One deadline for the whole attempt, connecting included.
            left = max(deadline - time.monotonic(), 0.001)
            complete = await asyncio.wait_for(_exchange(self, reader, writer, answer), left)
        except asyncio.TimeoutError:
            got = f", got {_shown(answer)}" if self.expect else ""
            wanted = f": expected {self.expect!r}{got}" if self.expect else ""
            outcome = result(f"timed out after {self.timeout:g}s{wanted}")
        except OSError as err:  # reset, broken pipe
            outcome = result(f"connection lost: {err.strerror or err}")
        except BaseException:
            writer.close()  # cancelled (the agent stopping): the socket must not leak
            raise
        else:
            if complete:
                outcome = result("")
            else:
                outcome = result(f"expected {self.expect!r}, got {_shown(answer)}")
        await certs.close(writer)
        return outcome


def _shown(data: bytes | bytearray) -> str:
    text = bytes(data[:60]).decode("utf-8", "replace")
    return repr(text + "...") if len(data) > 60 else repr(text)


async def _exchange(
    cfg: TcpCheck,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: bytearray,
) -> bool:
    """Send, then read into `answer` until `expect` appears (True) or the
    answer ends without it (False)."""
    if cfg.send:
        writer.write(cfg.send.encode())
        await writer.drain()
    if not cfg.expect:
        return True
    wanted = cfg.expect.encode()
    while wanted not in answer:
        chunk = await reader.read(65536)
        if not chunk or len(answer) >= MAX_ANSWER:
            return False
        answer += chunk
    return True


async def _connect(
    cfg: TcpCheck,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, certs.CertInfo | None]:
    host, port = host_port(cfg.address)
    if cfg.tls:
        return await certs.open_tls(
            host, port, cfg.server_name or host, cfg.verify_tls, cfg.ca_file
        )
    reader, writer = await asyncio.open_connection(host, port)
    return reader, writer, None
