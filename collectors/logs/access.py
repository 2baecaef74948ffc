"""Access-log metrics: request counts, bytes and latency quantiles from the
lines of an nginx or Apache access log (`[[logs]] format`), as Telegraf's
and mtail's access-log inputs give them, without another program.

Formats. `nginx_combined` is nginx's `combined` log_format; `apache_combined`
Apache's `combined` (and `common`: the referer and user agent may be
missing). Both accept what operators commonly put around them: a leading
`vhost` or `vhost:port` (Apache's `vhost_combined`), nginx's default
`main` format's `"$http_x_forwarded_for"` after the user agent, and after
those nginx's `$request_time` (seconds) with optionally
`$upstream_response_time`, or Apache's `%D` (microseconds). `regex` takes
a pattern of the operator's with named groups: `status` (required),
`bytes`, `vhost`, and one of `seconds`, `milliseconds`, `microseconds`.

Counting. Each parsed line counts one request in its (file, vhost,
status class) and its body bytes; these counters are committed with the
file offsets (tailer.py), so across a kill -9 every line counts exactly
once, as rule matches do. A line the format does not fit is counted in
`log_lines_unparsed_total{file}` and otherwise skipped.

Latency. Each line with a duration goes into a sliding-window sketch per
(file, vhost) (agent/core/sketch.py: logarithmic bins 1 % wide, the
DDSketch idea), so every quantile is within 1 % of the exact nearest-rank
quantile of the durations in the window. The window is `duration_window`
long, slid in steps of a twentieth of it; the sketches live in memory
(after a restart the window fills again).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent.core.sketch import Window

# "..." with the escapes both servers write (\" and \xHH)
_QUOTED = rb'"(?:[^"\\]|\\.)*"'
_PREFIX = (
    # vhost_combined's "%v:%p ", an IPv6 server name in brackets
    rb"^(?:(?P<vhost>\[[0-9A-Fa-f:.]+\]|[^\s:\[]+)(?::\d+)? )?"
    rb"\S+ \S+ \S+ \[[^\]]*\] " + _QUOTED + rb" (?P<status>\d{3}) (?P<bytes>\d+|-)"
    # common has no referer and agent; nginx's default `main` adds $http_x_forwarded_for
    rb"(?: " + _QUOTED + rb" " + _QUOTED + rb"(?: " + _QUOTED + rb")?)?"
)
FORMATS: dict[str, tuple[bytes, str]] = {
    # $request_time, then $upstream_response_time ("0.010", "-", "0.01, 0.02 : 0.03")
    "nginx_combined": (_PREFIX + rb"(?: (?P<seconds>\d+(?:\.\d*)?)(?: .*)?)?$", "seconds"),
    "apache_combined": (_PREFIX + rb"(?: (?P<microseconds>\d+))?$", "microseconds"),
}
SCALES = {"seconds": 1.0, "milliseconds": 1e-3, "microseconds": 1e-6}
# Bounds on what a line may claim: beyond them it is not an access-log line
# (or a hostile one), and the figures must stay encodable (msgpack's 64 bits).
MAX_BYTES = 10**15  # a petabyte in one response
MAX_SECONDS = 86400.0 * 365  # a year in one request
MAX_VHOST = 253  # a host name's longest
MAX_VHOSTS = 100  # per file; further ones are counted under OTHER_VHOST
OTHER_VHOST = "(other)"
QUANTILES = (0.5, 0.9, 0.95, 0.99)  # of http_request_duration_seconds
WINDOW_STEPS = 20  # buckets per window: the window slides in twentieths


@dataclass(frozen=True)
class Request:
    status_class: str
    bytes: int
    seconds: float | None
    vhost: str


def compile_format(format: str, regex: str = "") -> re.Pattern[bytes]:
    """The pattern of an access format (`regex`: the operator's, for "regex")."""
    if format == "regex":
        return re.compile(regex.encode())
    return re.compile(FORMATS[format][0])


def check_regex_groups(regex: str) -> str | None:
    """Why a `format = "regex"` pattern cannot give requests, or None."""
    groups = set(re.compile(regex).groupindex)
    if "status" not in groups:
        return "needs a named group status, e.g. (?P<status>\\d{3})"
    durations = groups & set(SCALES)
    if len(durations) > 1:
        return (
            f"has {len(durations)} duration groups; name one of seconds, milliseconds, microseconds"
        )
    return None


def parse(pattern: re.Pattern[bytes], line: bytes) -> Request | None:
    """One access-log line, or None when the format does not fit it."""
    m = pattern.match(line)
    if m is None:
        return None
    groups = m.groupdict()
    status = groups.get("status")
    if status is None or not status.isdigit() or not 100 <= int(status) <= 599:
        return None
    size = groups.get("bytes")
    if size and len(size) > 16:  # past MAX_BYTES: no int() of a thousand digits either
        return None
    sent = int(size) if size and size.isdigit() else 0
    seconds = None
    for name, scale in SCALES.items():
        value = groups.get(name)
        if value:
            try:
                seconds = float(value) * scale
            except ValueError:
                return None
            break
    vhost = groups.get("vhost") or b""
    if sent > MAX_BYTES or len(vhost) > MAX_VHOST:
        return None
    if seconds is not None and not 0 <= seconds <= MAX_SECONDS:  # NaN too
        return None
    return Request(f"{status[0:1].decode()}xx", sent, seconds, vhost.decode("utf-8", "replace"))


def lines(data: bytes | bytearray) -> Iterator[bytes]:
    """The lines of a chunk (it ends with a newline), without it or a CR."""
    for line in bytes(data).split(b"\n")[:-1]:
        yield line[:-1] if line.endswith(b"\r") else line


class AccessMetrics:
    """One table's requests: counters shared with the tailer's committed
    state, and the duration sketches."""

    def __init__(
        self,
        pattern: re.Pattern[bytes],
        window: float,
        counts: dict[tuple[str, str, str], list[Any]],
        unparsed: dict[str, int],
    ) -> None:
        self.pattern = pattern
        self.window = window
        self.counts = counts  # (file, vhost, status class) -> [requests, bytes]
        self.unparsed = unparsed  # file -> lines the format did not fit
        self.sketches: dict[tuple[str, str], Window] = {}
        self.vhosts: dict[str, set[str]] = {}  # file -> vhosts with series of their own
        for label, vhost, _ in counts:
            if vhost and vhost != OTHER_VHOST:
                self.vhosts.setdefault(label, set()).add(vhost)

    def observe(self, label: str, data: bytes | bytearray, now: float) -> None:
        for line in lines(data):
            request = parse(self.pattern, line)
            if request is None:
                self.unparsed[label] = self.unparsed.get(label, 0) + 1
                continue
            vhost = request.vhost
            known = self.vhosts.setdefault(label, set()) if vhost else None
            if known is not None and vhost not in known:
                if len(known) >= MAX_VHOSTS:
                    vhost = OTHER_VHOST  # a Host header is the client's to choose
                else:
                    known.add(vhost)
            key = (label, vhost, request.status_class)
            counted = self.counts.get(key)
            if counted is None:
                counted = self.counts[key] = [0, 0.0]
            counted[0] += 1
            counted[1] += float(request.bytes)  # a float: no sum can outgrow an encoder
            if request.seconds is not None:
                sketch = self.sketches.get((label, vhost))
                if sketch is None:
                    sketch = Window(self.window, self.window / WINDOW_STEPS)
                    self.sketches[(label, vhost)] = sketch
                sketch.add(now, True, request.seconds)

    def quantiles(self, now: float, qs: tuple[float, ...]) -> list[tuple[str, str, Any]]:
        """(file, vhost, {quantile: seconds}) of every sketch with durations
        in the window now; the emptied ones are dropped."""
        out = []
        for (label, vhost), sketch in list(self.sketches.items()):
            sketch.expire(now)
            if not sketch.ok:
                del self.sketches[(label, vhost)]
                continue
            out.append((label, vhost, sketch.quantiles(qs)))
        return out
