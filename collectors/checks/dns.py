"""The dns check: resolve a name as the host's programs do.

Asks the system resolver (getaddrinfo: /etc/hosts, then DNS, per
nsswitch.conf) for the `record` ("A" or "AAAA") addresses of `query`; the
message lists them. Critical when the name does not exist or has no such
address, the resolver fails or does not answer within `timeout`, or an
address in expect_addresses is not among the answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Literal

from agent.core.schema import opt
from collectors.checks.config import CHECK_TYPES, CheckConfig
from collectors.checks.model import Outcome, ProbeContext

_FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
# getaddrinfo's error codes worth a plainer message; the others keep glibc's.
_NO_ANSWER = {
    getattr(socket, name) for name in ("EAI_NODATA", "EAI_ADDRFAMILY") if hasattr(socket, name)
}


@CHECK_TYPES.register("dns")
@dataclass(frozen=True, kw_only=True)
class DnsCheck(CheckConfig):
    query: str = opt(check=lambda v: None if v else "must not be empty")
    record: Literal["A", "AAAA"] = "A"
    expect_addresses: tuple[str, ...] = ()  # empty: any answer will do

    async def probe(self, ctx: ProbeContext) -> Outcome:
        start = time.monotonic()
        loop = asyncio.get_running_loop()

        def result(message: str, ok: bool) -> Outcome:
            return Outcome(
                ok=ok,
                status="ok" if ok else "critical",
                message=message,
                latency=time.monotonic() - start,
            )

        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(
                    self.query, None, family=_FAMILIES[self.record], type=socket.SOCK_STREAM
                ),
                self.timeout,
            )
        except asyncio.TimeoutError:
            # The resolver thread carries on; only our wait ends.
            return result(f"{self.query}: timed out after {self.timeout:g}s", False)
        except socket.gaierror as err:
            return result(_error(self, err), False)
        except (OSError, UnicodeError) as err:  # e.g. a label longer than 63 characters
            return result(f"{self.query}: {err}", False)
        # One entry per address, in the resolver's order.
        answers = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not answers:
            return result(f"{self.query}: no {self.record} record", False)
        listed = ", ".join(answers)
        absent = missing(self.expect_addresses, answers)
        if absent:
            return result(f"{self.query}: {', '.join(absent)} missing (got {listed})", False)
        return result(f"{self.query} {self.record} {listed}", True)


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:  # not an address: compared as written
        return address


def missing(expected: tuple[str, ...], answers: list[str]) -> list[str]:
    """The expected addresses not answered, compared as addresses
    (2001:DB8:0::1 is 2001:db8::1)."""
    got = {_canonical(a) for a in answers}
    return [e for e in expected if _canonical(e) not in got]


def _error(cfg: DnsCheck, err: socket.gaierror) -> str:
    if err.errno == socket.EAI_NONAME:
        return f"{cfg.query}: no such name (or no {cfg.record} record)"
    if err.errno in _NO_ANSWER:
        return f"{cfg.query}: no {cfg.record} record"
    if err.errno == socket.EAI_AGAIN:
        return f"{cfg.query}: temporary failure in name resolution"
    return f"{cfg.query}: {err.strerror or err}"
