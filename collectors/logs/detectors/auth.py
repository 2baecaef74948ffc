"""Failed logins (`auth`), and brute-force findings.

Counts failed authentication attempts from sshd and PAM lines in auth.log,
secure and syslog, keyed by the remote address or host name as logged.
Each attempt counts once, although a system may log it twice: sshd writes
`Failed password for USER from ADDR port N ssh2` and pam_unix writes
`pam_unix(sshd:auth): authentication failure; ... rhost=ADDR user=USER`
(old systems: `sshd(pam_unix)[PID]: authentication failure; ...`). Some
systems log only the PAM line, some only sshd's. pam_unix moreover logs
only the first failure of a connection, and the others at its end as
`PAM N more authentication failures; ... rhost=ADDR`.

The dedup is a credit scheme. A line of one source (sshd or PAM) first
consumes outstanding credits of the other source for the same attempt;
what it cannot match counts, and leaves that many credits of its own
source. A credit matches a line from the same syslog host with the same
pid or the same remote: the pid covers `UseDNS yes`, where PAM's rhost is
a host name and sshd logs the address; the remote covers
keyboard-interactive, where PAM runs in a forked child with its own pid.
Credits expire after `credit_ttl` seconds (default 180 s, more than
sshd's default LoginGraceTime of 120 s, which bounds a connection's
pre-authentication life). So a system that logs both sources counts each
attempt once, whichever comes first, and a PAM-only or sshd-only system
counts every line. Only `password` and `keyboard-interactive/pam`
attempts go through PAM; `publickey`, `none`, `hostbased` and other
methods count directly and leave no credit. `message repeated N times:
[ ... ]` counts as N lines. PAM lines with an empty `rhost=` (a console
login) are not remote and are not counted; PAM modules other than
pam_unix (pam_sss, pam_ldap), sshd's `error: PAM: ...` lines and other
programs (klogind, ftpd) are out of scope.

When a PAM line without `user=` (an unknown user) was counted and the
matching sshd line names the user, the count moves to that user name in
`by_user`.

Brute force: when one address's failures within `window` seconds reach
`threshold`, one finding. The address is re-armed once its failures in
the window have fallen to half the threshold or below (checked at its
next failure), so an attacker holding a rate near the threshold gives
one finding, not one per attempt.

Memory: at most `max_remotes` addresses and `max_users` user names are
tracked; the least recently seen is evicted and its counters restart
from zero if it comes back (a Prometheus counter reset). Per address at
most `threshold` timestamps are kept. Outstanding credits are capped at
`MAX_CREDITS`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.core.records import counter
from agent.core.schema import Duration, opt
from collectors.logs.detectors.base import DETECTORS, Detector, Finding, Sample
from collectors.logs.detectors.syslog import SYSLOG


@dataclass(frozen=True, kw_only=True)
class AuthOptions:
    auth_threshold: int = opt(10, min=1)  # failures from one address within auth_window
    auth_window: Duration = opt(300.0, min=1.0)


# --------------------------------------------------------------------------
# failed logins: parsing

AuthSource = Literal["sshd", "pam"]

_SSHD_PROGS = frozenset({"sshd", "sshd-session", "sshd-auth"})
_PAM_METHODS = frozenset({"password", "keyboard-interactive/pam"})
USER_MAX_CHARS = 100

_REPEATED = re.compile(r"^message repeated (?P<n>\d+) times?: \[\s*(?P<inner>.*?)\s*\]$")
_FAILED = re.compile(
    r"^Failed (?P<method>\S+) for (?:(?P<invalid>invalid|illegal) user )?(?P<user>.*)"
    r" from (?P<addr>\S+)(?: port \d+)?(?:\s|$)"
)
_PAM_PREFIX = re.compile(r"^pam_unix\((?P<service>[^:()\s]+):auth\):\s*")
_PAM_FAILURE = re.compile(
    r"^(?:PAM )?(?:(?P<more>\d+) more authentication failures?|authentication failure);"
)
_RHOST = re.compile(r"\brhost=(?P<rhost>\S*)")
_PAM_USER = re.compile(r"(?:^|\s)user=(?P<user>\S*)")


@dataclass(frozen=True)
class AuthLine:
    """One failed-login line: `count` attempts from `remote`."""

    source: AuthSource  # which program logged it
    method: str  # sshd's method ("password", "publickey", ...) or "pam"
    remote: str  # address or host name, as logged
    user: str  # "" when not logged
    count: int  # attempts this line stands for
    pid: int | None
    host: str  # the syslog host field (several hosts may share one file)
    invalid_user: bool = False  # sshd said "invalid user"

    @property
    def through_pam(self) -> bool:
        """Whether the other source may log the same attempt."""
        return self.source == "pam" or self.method in _PAM_METHODS


def parse_auth_line(line: str) -> AuthLine | None:
    """Parse one syslog line into a failed login, or None if it is not one."""
    header = SYSLOG.match(line.rstrip("\r\n"))
    if header is None:
        return None
    prog = header["prog"]
    if prog not in _SSHD_PROGS:
        return None
    pid = int(header["pid"]) if header["pid"] else None
    return _parse_sshd_message(header["msg"], header["module"], pid, header["host"], 1)


def _parse_sshd_message(
    msg: str, module: str | None, pid: int | None, host: str, count: int
) -> AuthLine | None:
    repeated = _REPEATED.match(msg)
    if repeated is not None:
        n = int(repeated["n"])
        if n < 1:
            return None
        return _parse_sshd_message(repeated["inner"], module, pid, host, count * n)
    if module is None:
        failed = _FAILED.match(msg)
        if failed is not None:
            return AuthLine(
                source="sshd",
                method=failed["method"],
                remote=failed["addr"],
                user=failed["user"][:USER_MAX_CHARS],
                count=count,
                pid=pid,
                host=host,
                invalid_user=failed["invalid"] is not None,
            )
        prefix = _PAM_PREFIX.match(msg)
        if prefix is not None:
            if not prefix["service"].startswith("sshd"):
                return None
            msg = msg[prefix.end() :]
    elif module != "pam_unix":
        return None
    failure = _PAM_FAILURE.match(msg)
    if failure is None:
        return None
    rhost = _RHOST.search(msg)
    if rhost is None or not rhost["rhost"]:
        return None  # not a remote attempt (a console login)
    user = _PAM_USER.search(msg)
    more = failure["more"]
    n = int(more) if more is not None else 1
    if n < 1:
        return None
    return AuthLine(
        source="pam",
        method="pam",
        remote=rhost["rhost"],
        user=user["user"][:USER_MAX_CHARS] if user is not None else "",
        count=count * n,
        pid=pid,
        host=host,
    )


# --------------------------------------------------------------------------
# failed logins: counting


@dataclass(eq=False)
class _Credit:
    """Attempts one source counted that the other source may log again."""

    source: AuthSource
    host: str
    pid: int | None
    remote: str
    expires: float
    n: int  # attempts left to match
    blank: int  # of them, counted without a user name (PAM, unknown user)

    def alive(self, now: float) -> bool:
        return self.n > 0 and self.expires >= now


@dataclass
class _Recent:
    """One address's failures in the brute-force window."""

    times: deque[tuple[float, int]] = field(default_factory=deque)  # (time, attempts), oldest first
    total: int = 0  # attempts in `times`
    alerted: bool = False
    users: dict[str, None] = field(default_factory=dict)  # recent user names, oldest first

    def prune(self, since: float) -> None:
        while self.times and self.times[0][0] < since:
            self.total -= self.times.popleft()[1]

    def add(self, now: float, n: int) -> None:
        self.total += n
        if self.times and self.times[-1][0] == now:
            n += self.times.pop()[1]
        self.times.append((now, n))

    def trim(self, threshold: int) -> None:
        """Keep only the newest entries that still reach `threshold`: older
        ones expire first, so the threshold decisions stay exact while one
        address holds at most `threshold` entries."""
        while self.times and self.total - self.times[0][1] >= threshold:
            self.total -= self.times.popleft()[1]

    def note_user(self, user: str) -> None:
        if user:
            self.users.pop(user, None)
            self.users[user] = None
            if len(self.users) > AuthDetector.USERS_PER_FINDING:
                del self.users[next(iter(self.users))]


@DETECTORS.register("auth")
class AuthDetector(Detector):
    """Failed logins per remote address, and brute-force findings (see the module docstring)."""

    Options = AuthOptions
    takes = "lines"
    patterns = (r"Failed \S+ for ", r"authentication failures?;")
    event_type = "security"
    specs = (
        counter("auth_failures_total", "Failed authentication attempts, by remote address."),
        counter("auth_failures_by_user_total", "Failed authentication attempts, by user name."),
    )
    REARM_FRACTION = 0.5
    MAX_CREDITS = 100_000
    USERS_PER_FINDING = 10
    SNAPSHOT_VERSION = 1

    def __init__(
        self,
        threshold: int = 10,
        window: float = 300.0,
        max_remotes: int = 10_000,
        *,
        max_users: int | None = None,
        credit_ttl: float = 180.0,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        if max_remotes < 1:
            raise ValueError("max_remotes must be at least 1")
        self.threshold = threshold
        self.window = window
        self.max_remotes = max_remotes
        self.max_users = max_users if max_users is not None else max_remotes
        self.credit_ttl = credit_ttl
        # auth_failures_total{remote=...}, least recently seen first
        self.by_remote: dict[str, int] = {}
        self.by_user: dict[str, int] = {}
        self._recent: dict[str, _Recent] = {}
        self._credits: deque[_Credit] = deque()  # oldest first
        self._index: dict[tuple[str, str, object], deque[_Credit]] = {}

    @classmethod
    def configured(cls, options: AuthOptions, state: Any) -> AuthDetector:
        args = (options.auth_threshold, options.auth_window)
        return cls.restore(state, *args) if state else cls(*args)

    # -- feeding

    def feed(self, line: str, file: str, now: float, rule: str | None = None) -> list[Finding]:
        """Account one line (one a pattern matched); return any brute-force finding."""
        self._expire(now)
        parsed = parse_auth_line(line)
        if parsed is None:
            return []
        return self.account(parsed, now)

    def account(self, attempt: AuthLine, now: float) -> list[Finding]:
        """Count an already parsed line, matching it against the other source's credits."""
        n = attempt.count
        if attempt.through_pam:
            other: AuthSource = "pam" if attempt.source == "sshd" else "sshd"
            for credit in self._matching(other, attempt, now):
                take = min(n, credit.n)
                blank = min(take, credit.blank)
                credit.n -= take
                credit.blank -= blank
                n -= take
                if blank and attempt.user:
                    self._move_user_count(credit.remote, attempt.user, blank)
                if n == 0:
                    break
            if n > 0:
                blank = n if attempt.source == "pam" and not attempt.user else 0
                self._add_credit(attempt, n, blank, now)
        if n == 0:
            return []
        return self._count(attempt.remote, attempt.user, n, now)

    def _matching(self, other: AuthSource, attempt: AuthLine, now: float) -> list[_Credit]:
        keys: list[tuple[str, str, object]] = []
        if attempt.pid is not None:
            keys.append(("pid", attempt.host, attempt.pid))
        keys.append(("remote", attempt.host, attempt.remote))
        found: list[_Credit] = []
        for key in keys:
            for credit in self._index.get(key, ()):
                if credit.source == other and credit.alive(now) and credit not in found:
                    found.append(credit)
        return found

    def _add_credit(self, attempt: AuthLine, n: int, blank: int, now: float) -> None:
        credit = _Credit(
            attempt.source,
            attempt.host,
            attempt.pid,
            attempt.remote,
            now + self.credit_ttl,
            n,
            blank,
        )
        self._credits.append(credit)
        for key in self._keys(credit):
            self._index.setdefault(key, deque()).append(credit)
        while len(self._credits) > self.MAX_CREDITS:
            self._drop_credit(self._credits.popleft(), now)

    @staticmethod
    def _keys(credit: _Credit) -> list[tuple[str, str, object]]:
        keys: list[tuple[str, str, object]] = [("remote", credit.host, credit.remote)]
        if credit.pid is not None:
            keys.append(("pid", credit.host, credit.pid))
        return keys

    def _expire(self, now: float) -> None:
        while self._credits and not self._credits[0].alive(now):
            self._drop_credit(self._credits.popleft(), now)

    def _drop_credit(self, credit: _Credit, now: float) -> None:
        credit.n = 0
        for key in self._keys(credit):
            queue = self._index.get(key)
            if queue is None:
                continue
            while queue and not queue[0].alive(now):
                queue.popleft()
            if not queue:
                del self._index[key]

    def _count(self, remote: str, user: str, n: int, now: float) -> list[Finding]:
        self.by_remote[remote] = self.by_remote.pop(remote, 0) + n
        self.by_user[user] = self.by_user.pop(user, 0) + n
        recent = self._recent.pop(remote, None) or _Recent()
        self._recent[remote] = recent
        while len(self._recent) > self.max_remotes:
            oldest = next(iter(self._recent))
            del self._recent[oldest]
            self.by_remote.pop(oldest, None)
        while len(self.by_user) > self.max_users:
            del self.by_user[next(iter(self.by_user))]

        recent.prune(now - self.window)
        if recent.alerted and recent.total <= self.threshold * self.REARM_FRACTION:
            recent.alerted = False
        recent.add(now, n)
        recent.note_user(user)
        findings: list[Finding] = []
        if not recent.alerted and recent.total >= self.threshold:
            recent.alerted = True
            users = list(reversed(recent.users))
            findings.append(
                Finding(
                    detector="auth",
                    severity="high",
                    message=(
                        f"brute force: {recent.total} failed logins from {remote} "
                        f"in {self.window:g}s" + (f" (users: {', '.join(users)})" if users else "")
                    ),
                    fields={
                        "remote": remote,
                        "count": recent.total,
                        "window": self.window,
                        "users": users,
                    },
                )
            )
        recent.trim(self.threshold)
        return findings

    def _move_user_count(self, remote: str, user: str, n: int) -> None:
        """PAM counted `n` attempts without a user name; sshd names the user."""
        left = self.by_user.get("", 0) - n
        if left > 0:
            self.by_user[""] = left
        else:
            self.by_user.pop("", None)
        self.by_user[user] = self.by_user.pop(user, 0) + n
        recent = self._recent.get(remote)
        if recent is not None:
            recent.note_user(user)

    def samples(self) -> list[Sample]:
        out: list[Sample] = [
            ("auth_failures_total", {"remote": remote}, n) for remote, n in self.by_remote.items()
        ]
        # a user not logged (PAM-only lines) is counted by remote only
        out += [
            ("auth_failures_by_user_total", {"user": u}, n) for u, n in self.by_user.items() if u
        ]
        return out

    # -- persistence

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.SNAPSHOT_VERSION,
            "remotes": [
                [remote, self.by_remote.get(remote, 0), r.alerted, list(r.times), list(r.users)]
                for remote, r in self._recent.items()
            ],
            "users": [[user, n] for user, n in self.by_user.items()],
            "credits": [
                [c.source, c.host, c.pid, c.remote, c.expires, c.n, c.blank]
                for c in self._credits
                if c.n > 0
            ],
        }

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        threshold: int,
        window: float,
        max_remotes: int = 10_000,
        **kwargs: Any,
    ) -> AuthDetector:
        """A detector from `snapshot()`'s dict; a fresh one if it cannot be read."""
        det = cls(threshold, window, max_remotes, **kwargs)
        try:
            if data.get("version") != cls.SNAPSHOT_VERSION:
                return det
            for remote, count, alerted, times, users in data["remotes"]:
                recent = _Recent(alerted=bool(alerted))
                for t, n in times:
                    recent.add(float(t), int(n))
                for user in users:
                    recent.note_user(str(user))
                recent.trim(threshold)
                det._recent[str(remote)] = recent
                det.by_remote[str(remote)] = int(count)
            for user, count in data["users"]:
                det.by_user[str(user)] = int(count)
            for source, host, pid, remote, expires, n, blank in data["credits"]:
                if source not in ("sshd", "pam"):
                    raise ValueError(f"unknown credit source {source!r}")
                credit = _Credit(
                    source,
                    str(host),
                    None if pid is None else int(pid),
                    str(remote),
                    float(expires),
                    int(n),
                    int(blank),
                )
                det._credits.append(credit)
                for key in cls._keys(credit):
                    det._index.setdefault(key, deque()).append(credit)
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls(threshold, window, max_remotes, **kwargs)
        while len(det._recent) > det.max_remotes:
            oldest = next(iter(det._recent))
            del det._recent[oldest]
            det.by_remote.pop(oldest, None)
        while len(det.by_user) > det.max_users:
            del det.by_user[next(iter(det.by_user))]
        return det
