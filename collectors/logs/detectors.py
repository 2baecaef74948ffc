"""Detectors beyond plain patterns: failed logins, log volume spikes, and
previously unseen error signatures (docs/logs.md, "Detectors").

Everything here is pure: no file or network I/O and no clock. The tailer
passes each line with the time it read it (`now`, float seconds) and turns
every `Finding` into an event record. Each detector's state is a plain
dict from `snapshot()` (msgpack- and JSON-able) that the tailer persists and
hands back to `restore()`; a snapshot that cannot be read gives a fresh
detector rather than an error, because lost detector state must never stop
the agent.

Failed logins (`AuthDetector`)
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

Volume spikes (`VolumeDetector`) and new error signatures
(`SignatureDetector`): see their docstrings.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ERROR_PATTERN",
    "ERROR_PATTERNS",
    "AuthDetector",
    "AuthLine",
    "Finding",
    "SignatureDetector",
    "VolumeDetector",
    "parse_auth_line",
    "template",
]


@dataclass(frozen=True)
class Finding:
    """What a detector reports; the tailer turns it into an event record."""

    detector: str  # "auth" | "volume" | "new_error"
    severity: str  # "critical" | "high" | "medium" | "low" | "info"
    message: str  # one human line
    fields: dict[str, Any]


# --------------------------------------------------------------------------
# syslog lines

_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_BSD_TS = rf"(?:{_MONTHS})\s+\d{{1,2}}\s+\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?"
_ISO_TS = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"

# `TIMESTAMP HOST PROG[(MODULE)][[PID]]: MESSAGE`, as rsyslog, syslog-ng and
# `journalctl -o short*` write it (BSD or RFC 3339 time stamps).
_SYSLOG = re.compile(
    rf"^(?:<\d{{1,3}}>)?(?:{_BSD_TS}|{_ISO_TS})\s+(?P<host>\S+)\s+"
    r"(?P<prog>[^\s\[\]():]+)(?:\((?P<module>[^\s()]*)\))?(?:\[(?P<pid>\d+)\])?:\s?"
    r"(?P<msg>.*)$"
)


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
    header = _SYSLOG.match(line.rstrip("\r\n"))
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


class AuthDetector:
    """Failed logins per remote address, and brute-force findings (see the module docstring)."""

    PREFILTER: tuple[str, ...] = (r"Failed \S+ for ", r"authentication failures?;")
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

    # -- feeding

    def feed(self, line: str, now: float) -> list[Finding]:
        """Account one line (one the PREFILTER matched); return any brute-force finding."""
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


# --------------------------------------------------------------------------
# volume spikes


_MAX_LEARNED = 2**31


@dataclass
class _Volume:
    minute: int  # the open minute (whole minutes since the epoch)
    count: int = 0  # lines in the open minute so far
    mean: float = 0.0  # baseline: EWMA of closed minutes
    var: float = 0.0  # exponentially weighted variance around it
    learned: int = 0  # closed minutes in the baseline
    reported: bool = False  # the open minute already gave a finding
    partial: bool = True  # the open minute is neither learned nor reported
    resumed: bool = False  # restored: the time since the snapshot is unknown


class VolumeDetector:
    """Log volume spikes: lines per minute of one file against a learned baseline.

    Lines are counted in whole-minute buckets by `now // 60`. A minute closes
    when an observation of a later minute arrives; minutes with no
    observation in between count as zero lines. The baseline is an
    exponentially weighted mean and variance of closed minutes, with weight
    `alpha = 2 / (learn_minutes + 1)` (the mean of all closed minutes while
    there are fewer than `1 / alpha`).

    Rule: the open minute is a spike as soon as its count so far satisfies
    all of
        - at least `learn_minutes` closed minutes are in the baseline,
        - count >= min_lines,
        - count > factor * mean, and
        - count > mean + DEVIATIONS * stddev (so a normally bursty file needs
          more than `factor` times its mean),
    and it gives one finding (the count is the one at detection, so at least
    the threshold); the minute is not reported again. A spiking minute is
    learned clipped to that threshold, so a lasting new level is learned
    gradually while one burst does not blind the detector.

    The first minute of a file, and the first minute after `restore()`, are
    neither learned nor reported: they are partial and may hold a backlog
    read at start. After a restore the minutes the agent was down are not
    learned as zeros either. If the clock goes back, lines count in the open
    minute. Memory is a few numbers per file, for at most `max_files` files
    (least recently observed evicted).
    """

    DEVIATIONS = 4.0
    SNAPSHOT_VERSION = 1

    def __init__(
        self,
        factor: float = 3.0,
        min_lines: int = 100,
        learn_minutes: int = 30,
        *,
        max_files: int = 4096,
    ) -> None:
        if factor <= 0 or min_lines < 0 or learn_minutes < 0 or max_files < 1:
            raise ValueError(
                "factor must be positive, min_lines and learn_minutes >= 0, max_files >= 1"
            )
        self.factor = factor
        self.min_lines = min_lines
        self.learn_minutes = learn_minutes
        self.max_files = max_files
        self.alpha = min(1.0, 2.0 / (learn_minutes + 1))
        # past this many zero minutes the old baseline weighs less than e**-20
        self._idle_cap = int(20 / self.alpha) + 1
        self._files: dict[str, _Volume] = {}

    def observe(self, file: str, lines: int, now: float) -> list[Finding]:
        """Count `lines` read from `file` since the last call."""
        minute = int(now // 60)
        state = self._files.pop(file, None)
        if state is None:
            state = _Volume(minute=minute)
        self._files[file] = state
        while len(self._files) > self.max_files:
            del self._files[next(iter(self._files))]
        if state.resumed:
            state.resumed = False
            if minute > state.minute:  # the minutes the agent was down are unknown
                state.minute, state.count, state.reported = minute, 0, False
        elif minute > state.minute:
            self._close(state, minute)
        state.count += lines
        if state.reported or state.partial:
            return []
        threshold = self._threshold(state)
        if threshold is None or state.count < self.min_lines or state.count <= threshold:
            return []
        state.reported = True
        return [
            Finding(
                detector="volume",
                severity="medium",
                message=(
                    f"log volume spike in {file}: {state.count} lines this minute, "
                    f"baseline {state.mean:.1f}"
                ),
                fields={
                    "file": file,
                    "lines_per_minute": state.count,
                    "baseline": round(state.mean, 3),
                    "minute": state.minute * 60,
                },
            )
        ]

    def _threshold(self, state: _Volume) -> float | None:
        if state.learned < self.learn_minutes:
            return None
        std = math.sqrt(max(state.var, 0.0))
        return max(self.factor * state.mean, state.mean + self.DEVIATIONS * std)

    def _close(self, state: _Volume, minute: int) -> None:
        if not state.partial:
            threshold = self._threshold(state)
            count = float(state.count)
            self._learn(state, count if threshold is None else min(count, threshold))
        idle = minute - state.minute - 1
        for _ in range(min(idle, self._idle_cap)):
            self._learn(state, 0.0)
        if idle > self._idle_cap:
            state.learned = min(state.learned + idle - self._idle_cap, _MAX_LEARNED)
        state.minute = minute
        state.count = 0
        state.reported = False
        state.partial = False

    def _learn(self, state: _Volume, value: float) -> None:
        state.learned = min(state.learned + 1, _MAX_LEARNED)
        alpha = max(self.alpha, 1.0 / state.learned)
        diff = value - state.mean
        incr = alpha * diff
        state.mean += incr
        state.var = (1.0 - alpha) * (state.var + diff * incr)

    def baseline(self, file: str) -> float | None:
        """The learned lines per minute of `file` (None if not seen)."""
        state = self._files.get(file)
        return None if state is None else state.mean

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.SNAPSHOT_VERSION,
            "files": [
                [f, s.minute, s.count, s.mean, s.var, s.learned, s.reported]
                for f, s in self._files.items()
            ],
        }

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        factor: float = 3.0,
        min_lines: int = 100,
        learn_minutes: int = 30,
        **kwargs: Any,
    ) -> VolumeDetector:
        """A detector from `snapshot()`'s dict; a fresh one if it cannot be read."""
        det = cls(factor, min_lines, learn_minutes, **kwargs)
        try:
            if data.get("version") != cls.SNAPSHOT_VERSION:
                return det
            for f, minute, count, mean, var, learned, reported in data["files"]:
                det._files[str(f)] = _Volume(
                    minute=int(minute),
                    count=int(count),
                    mean=float(mean),
                    var=float(var),
                    learned=int(learned),
                    reported=bool(reported),
                    partial=True,
                    resumed=True,
                )
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls(factor, min_lines, learn_minutes, **kwargs)
        while len(det._files) > det.max_files:
            del det._files[next(iter(det._files))]
        return det


# --------------------------------------------------------------------------
# new error signatures

# Error-level text lines: upper-case level words, Apache/nginx `[error]`,
# logfmt/JSON `level=error`, klog `E1126 10:00:00.123456 1 server.go:12]`.
# Separate patterns, each holding a literal the matcher's fast path can look
# for (a pattern without one is scanned by `re`, at a tenth of the speed).
ERROR_PATTERNS: tuple[str, ...] = (
    r"\b(?:ERROR|FATAL|CRITICAL|CRIT|SEVERE|PANIC|EMERG|ALERT)\b",
    r"\[(?:[\w-]*:)?(?:error|crit|alert|emerg)\]",
    r"\b(?:level|lvl|severity)\"?\s*[=:]\s*\"?"
    r"(?:[Ee]rr(?:or)?|ERR(?:OR)?|eror|[Cc]rit(?:ical)?|CRIT(?:ICAL)?|[Ff]atal|FATAL"
    r"|[Pp]anic|PANIC|[Ee]merg(?:ency)?|EMERG|[Aa]lert|ALERT)\b",
    r"^[EF]\d{4} \d{2}:\d{2}:\d{2}\.\d+ +\d+ [\w.-]+\.go:\d+\]",
)
ERROR_PATTERN = "|".join(f"(?:{p})" for p in ERROR_PATTERNS)

_TEMPLATE_MAX_CHARS = 2048
_HEX = "0-9A-Fa-f"
_TS_ANYWHERE = re.compile(
    "|".join(
        (
            _ISO_TS,
            rf"\b(?:(?:{_DAYS})\s+)?{_BSD_TS}(?:\s+\d{{4}})?\b",
            rf"\b\d{{1,2}}/(?:{_MONTHS})/\d{{4}}:\d{{2}}:\d{{2}}:\d{{2}}(?:\s[+-]\d{{4}})?",
            r"\b\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?",
            r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b",
        )
    )
)
_MASKS: tuple[tuple[re.Pattern[str], str, str | None], ...] = (  # pattern, mask, a must
    (_TS_ANYWHERE, "<ts>", ":"),
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+"), "<url>", "://"),
    (re.compile(r'"(?:[^"\\]|\\.)*"'), "<str>", '"'),
    (re.compile(r"(?<!\w)'[^'\n]*'(?!\w)"), "<str>", "'"),
    (
        re.compile(
            rf"(?<![{_HEX}])[{_HEX}]{{8}}(?:-[{_HEX}]{{4}}){{3}}-[{_HEX}]{{12}}(?![{_HEX}])"
        ),
        "<uuid>",
        "-",
    ),
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"), "<ip>", "."),
)
_IPV6_CANDIDATE = re.compile(
    rf"(?<![\w:.])(?:[{_HEX}]{{0,4}}:){{2,7}}(?:<ip>|[{_HEX}]{{1,4}})?(?![\w:])"
)
_PATH = re.compile(r"(?<![\w.<>/])(?:~|\.{1,2})?(?:/[^\s/\"'<>\[\](){},;:=]+)+/?")
_HEX_ID = re.compile(
    rf"(?<![A-Za-z0-9])(?:0[xX][{_HEX}]+|(?=[{_HEX}]*\d)(?=[{_HEX}]*[A-Fa-f])[{_HEX}]{{6,}})"
    r"(?![A-Za-z0-9])"
)
_NUM = re.compile(r"(?:(?<=[\s_:=(\[,])-)?\d+(?:[.,]\d+)*")  # "blk_-123": sign too
_SPACE = re.compile(r"\s+")


def _ipv6(match: re.Match[str]) -> str:
    text = match.group()
    if "::" in text or "<ip>" in text or any(c in "abcdefABCDEF" for c in text):
        return "<ip>"
    return text


def template(line: str) -> str:
    """The error signature of a line: variable parts masked, so the same
    error at another time, for another id or address, gives the same text.

    A syslog prefix (time stamp, host, `prog[pid]:`) becomes `prog:`; then
    time stamps (`<ts>`), URLs (`<url>`), quoted strings (`<str>`), UUIDs
    (`<uuid>`), IPv4/IPv6 addresses with an optional port (`<ip>`), absolute
    and relative paths (`<path>`), hex ids (`<hex>`: `0x...`, or 6+ hex
    digits mixing letters and digits) and numbers (`<num>`, with a sign after
    `_`, `:`, `=`, ...) are masked, and white space is collapsed. Only the
    first 2048 characters are used.
    """
    text = line[:_TEMPLATE_MAX_CHARS].rstrip("\r\n")
    header = _SYSLOG.match(text)
    if header is not None:
        module = f"({header['module']})" if header["module"] is not None else ""
        text = f"{header['prog']}{module}: {header['msg']}"
    # Each mask runs only if the line holds the character every match of it
    # needs (the masks put in none of them): the same result, at half the cost.
    for pattern, mask, needs in _MASKS:
        if needs is None or needs in text:
            text = pattern.sub(mask, text)
    if text.count(":") >= 2:
        text = _IPV6_CANDIDATE.sub(_ipv6, text)
    if "/" in text:
        text = _PATH.sub("<path>", text)
    text = _HEX_ID.sub("<hex>", text)
    text = _NUM.sub("<num>", text)
    return _SPACE.sub(" ", text).strip()


def _signature(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class SignatureDetector:
    """New error signatures: an error line whose `template()` this host has never seen.

    `feed()` trusts its caller: it is given only error lines, those that
    matched ERROR_PATTERN or a rule (`rule` names it), or a JSON line's
    message whose level field says error; it does not match again.
    Templates are kept as 64-bit BLAKE2b hashes, at most `max_templates` of
    them; when full, new templates are neither learned nor reported, and
    `dropped` counts those lines (export it as a counter). Known templates stay known for good: the
    set is persisted by `snapshot()` and never aged out.
    """

    ERROR_PATTERN = ERROR_PATTERN
    ERROR_PATTERNS = ERROR_PATTERNS
    SNAPSHOT_VERSION = 1
    LINE_MAX_CHARS = 1024  # of the line carried in a finding

    def __init__(self, max_templates: int = 4096) -> None:
        if max_templates < 0:
            raise ValueError("max_templates must be >= 0")
        self.max_templates = max_templates
        self.dropped = 0
        self._seen: set[int] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def feed(self, line: str, file: str, now: float, rule: str | None = None) -> list[Finding]:
        text = template(line)
        signature = _signature(text)
        if signature in self._seen:
            return []
        if len(self._seen) >= self.max_templates:
            self.dropped += 1
            return []
        self._seen.add(signature)
        shown = line.rstrip("\r\n")[: self.LINE_MAX_CHARS]
        return [
            Finding(
                detector="new_error",
                severity="medium",
                message=f"new error in {file}: {text[:200]}",
                fields={"template": text, "file": file, "line": shown, "rule": rule},
            )
        ]

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": self.SNAPSHOT_VERSION,
            "templates": sorted(self._seen),
            "dropped": self.dropped,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], max_templates: int = 4096) -> SignatureDetector:
        """A detector from `snapshot()`'s dict; a fresh one if it cannot be read."""
        det = cls(max_templates)
        try:
            if data.get("version") != cls.SNAPSHOT_VERSION:
                return det
            seen = {int(h) for h in data["templates"]}
            dropped = int(data.get("dropped", 0))
        except (KeyError, TypeError, ValueError, AttributeError):
            return det
        det._seen = set(sorted(seen)[:max_templates])
        det.dropped = dropped
        return det
