"""`[[processes]]`: named groups of processes (a web server's master and
workers, a database, a job runner), watched as Telegraf's procstat and
process-exporter watch them: how many run, their CPU, memory, open files
and threads, and when the group restarted.

Matching. A group's `match` names one or more of: `exe` (the executable's
path, or its file name), `cmdline` (a regex searched in the command line,
arguments joined by spaces), `pidfile` (the process whose pid the file
holds), `user` (the owner's name or uid); a process must fit every one
given. Read from procfs directly (`[host] procfs`), not through psutil:
a scan is a listing of /proc and, for a process not seen before, what
the match needs (its cmdline, its exe link, the owner of its directory);
the verdict is kept per (pid, start time), so a steady host costs one
stat line per matching process and a listing per interval.

Figures per group: `process_group_up` (the number of matching processes;
0 is down, and the default rule ProcessDown fires), CPU seconds (user +
system, summed: a counter that steps down when a process leaves),
resident bytes, open file descriptors (of the processes this user may
look into), threads, the start time of the oldest, and
`process_group_restarts_total`: each time the oldest process's start time
changes from one collection to a later one where the group runs (a
restart, or a crash and a start) since the agent started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.core.records import Metric, Record, Spec, counter, gauge
from agent.core.schema import Invalid, check_identifier, check_regex, opt
from collectors.base import Collector

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
FORGET_AFTER = 300.0  # seconds a non-matching verdict is trusted (a reused pid)


@dataclass(frozen=True)
class MatchConfig:
    exe: str = ""
    cmdline: str = opt("", check=lambda v: check_regex(v) if v else None)
    pidfile: Path | None = None
    user: str = ""

    def __post_init__(self) -> None:
        if not (self.exe or self.cmdline or self.pidfile or self.user):
            raise Invalid("name at least one of exe, cmdline, pidfile, user", key="exe")


@dataclass(frozen=True)
class ProcessesConfig:
    name: str = opt(check=check_identifier)
    match: MatchConfig = opt()


SPECS: tuple[Spec, ...] = (
    gauge("process_group_up", "Processes of the group running now (0: down)."),
    counter("process_group_cpu_seconds_total", "CPU (user + system) of the group's processes."),
    gauge("process_group_resident_bytes", "Resident memory of the group's processes."),
    gauge("process_group_open_fds", "Open file descriptors of the group's processes."),
    gauge("process_group_threads", "Threads of the group's processes."),
    gauge("process_group_start_time_seconds", "When the group's oldest process started."),
    counter("process_group_restarts_total", "Times the group's oldest process changed."),
)


@dataclass
class _Proc:
    start: int  # clock ticks after boot: with the pid, what makes a process one
    matches: dict[str, bool]  # group -> verdict
    seen: float  # when the verdict was made


class ProcessCollector(Collector):
    """Every [[processes]] group, in one scan of procfs (in a worker thread)."""

    name = "processes"
    blocking = True
    specs = SPECS

    def __init__(self, groups: Sequence[ProcessesConfig], procfs: Path = Path("/proc")) -> None:
        self.groups = tuple(groups)
        self.procfs = procfs
        self.regexes = {g.name: re.compile(g.match.cmdline) for g in groups if g.match.cmdline}
        self.known: dict[int, _Proc] = {}
        self.oldest: dict[str, float] = {}  # group -> start time last seen running
        self.restarts = {g.name: 0 for g in groups}
        self.boot = self._boot_time()

    def _boot_time(self) -> float:
        for line in (self.procfs / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
        return 0.0

    def collect(self, ts: float, mono: float) -> Sequence[Record]:
        pidfiles: dict[str, int | None] = {
            g.name: _pid_in(g.match.pidfile) for g in self.groups if g.match.pidfile
        }
        found: dict[str, list[tuple[int, list[str]]]] = {g.name: [] for g in self.groups}
        alive = set()
        for entry in os.scandir(self.procfs):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            fields = _stat(self.procfs / entry.name / "stat")
            if fields is None:
                continue  # gone since the listing
            alive.add(pid)
            start = int(fields[19])
            proc = self.known.get(pid)
            if proc is None or proc.start != start or ts - proc.seen > FORGET_AFTER:
                proc = self.known[pid] = _Proc(start, self._verdicts(pid), ts)
            for name, fits in proc.matches.items():
                # a pidfile is read each time: the pid it names changes on a restart
                if fits and pidfiles.get(name, pid) == pid:
                    found[name].append((pid, fields))
        for pid in set(self.known) - alive:
            del self.known[pid]
        out: list[Record] = []
        for group in self.groups:
            out += self._figures(group.name, found[group.name], ts)
        return out

    def _verdicts(self, pid: int) -> dict[str, bool]:
        """Whether the process fits each group, by what does not change in
        its life: owner, executable, command line."""
        base = self.procfs / str(pid)
        cache: dict[str, object] = {}

        def get(what: str) -> object:
            if what not in cache:
                try:
                    if what == "cmdline":
                        raw = (base / "cmdline").read_bytes().rstrip(b"\0")
                        cache[what] = raw.replace(b"\0", b" ").decode("utf-8", "replace")
                    elif what == "exe":
                        cache[what] = os.readlink(base / "exe")
                    else:
                        cache[what] = os.stat(base).st_uid
                except OSError:  # gone, or not ours to look into (exe of root's)
                    cache[what] = None
            return cache[what]

        out = {}
        for group in self.groups:
            m = group.match
            fits = True
            if m.user:
                fits = get("uid") == _uid(m.user)
            if fits and m.exe:
                exe = get("exe")
                fits = isinstance(exe, str) and (
                    exe == m.exe or ("/" not in m.exe and os.path.basename(exe) == m.exe)
                )
            if fits and m.cmdline:
                line = get("cmdline")
                regex = self.regexes[group.name]
                fits = isinstance(line, str) and bool(line) and regex.search(line) is not None
            out[group.name] = fits
        return out

    def _figures(self, group: str, procs: list[tuple[int, list[str]]], ts: float) -> list[Record]:
        labels = {"group": group}
        cpu = rss = threads = fds = 0.0
        oldest = None
        for pid, fields in procs:
            cpu += (int(fields[11]) + int(fields[12])) / _TICK
            threads += int(fields[17])
            rss += int(fields[21]) * _PAGE
            started = self.boot + int(fields[19]) / _TICK
            oldest = started if oldest is None else min(oldest, started)
            with contextlib.suppress(OSError):  # another user's, we not root: not counted
                fds += len(os.listdir(self.procfs / str(pid) / "fd"))
        if oldest is not None:
            before = self.oldest.get(group)
            if before is not None and abs(before - oldest) > 1.0 / _TICK:
                self.restarts[group] += 1
            self.oldest[group] = oldest
        out: list[Record] = [
            Metric("process_group_up", len(procs), ts, labels),
            Metric("process_group_restarts_total", self.restarts[group], ts, labels, "counter"),
        ]
        if procs:
            out += [
                Metric("process_group_cpu_seconds_total", cpu, ts, labels, "counter"),
                Metric("process_group_resident_bytes", rss, ts, labels),
                Metric("process_group_open_fds", fds, ts, labels),
                Metric("process_group_threads", threads, ts, labels),
                Metric("process_group_start_time_seconds", oldest or 0.0, ts, labels),
            ]
        return out


def _stat(path: Path) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (which may hold
    spaces and parentheses), numbered as in proc(5) minus 3: state is 0."""
    try:
        text = path.read_bytes()
    except OSError:
        return None
    return text[text.rfind(b")") + 2 :].decode().split()


def _pid_in(pidfile: Path | None) -> int | None:
    try:
        return int((pidfile or Path()).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _uid(user: str) -> int | None:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None
