"""Days of the report: a date in a time zone as [start, end) Unix seconds."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import zoneinfo
from pathlib import Path

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LOCALTIME = Path("/etc/localtime")


class BadDate(ValueError):
    """A date that is not YYYY-MM-DD, or not a day the report can cover."""


def zone(name: str) -> dt.tzinfo:
    """`[hub.reports] timezone`: an IANA name; "" is the hub's local time
    (TZ, else /etc/localtime, else UTC)."""
    if name:
        return zoneinfo.ZoneInfo(name)
    tz = os.environ.get("TZ", "").removeprefix(":")
    if tz:
        try:
            return zoneinfo.ZoneInfo(tz)
        except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
            pass
    try:
        with LOCALTIME.open("rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return dt.timezone.utc


def zone_name(tz: dt.tzinfo) -> str:
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


def parse_date(text: str) -> dt.date:
    """YYYY-MM-DD, from 1970 to 9998; BadDate naming what is wrong."""
    if not DATE.match(text):
        raise BadDate(f"date must be YYYY-MM-DD, not {text[:40]!r}")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise BadDate(f"date {text!r} is not a day: {exc}") from exc
    if not 1970 <= day.year <= 9998:
        raise BadDate(f"date {text!r} is out of range (1970 to 9998)")
    return day


def bounds(day: dt.date, tz: dt.tzinfo) -> tuple[float, float]:
    """The day's local midnight and the next one (23 or 25 h apart on a
    change of daylight saving time), as Unix seconds."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp()
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz).timestamp()
    return start, end


def today(tz: dt.tzinfo, now: float | None = None) -> dt.date:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, tz).date()


def yesterday(tz: dt.tzinfo, now: float | None = None) -> dt.date:
    """The report's default date: the day before today in `tz`."""
    return today(tz, now) - dt.timedelta(days=1)
