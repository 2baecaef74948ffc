"""The syslog line header, as the detectors read it: `TIMESTAMP HOST
PROG[(MODULE)][[PID]]: MESSAGE`, as rsyslog, syslog-ng and `journalctl -o
short*` write it (BSD or RFC 3339 time stamps)."""

from __future__ import annotations

import re

MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
BSD_TS = rf"(?:{MONTHS})\s+\d{{1,2}}\s+\d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)?"
ISO_TS = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"

SYSLOG = re.compile(
    rf"^(?:<\d{{1,3}}>)?(?:{BSD_TS}|{ISO_TS})\s+(?P<host>\S+)\s+"
    r"(?P<prog>[^\s\[\]():]+)(?:\((?P<module>[^\s()]*)\))?(?:\[(?P<pid>\d+)\])?:\s?"
    r"(?P<msg>.*)$"
)
