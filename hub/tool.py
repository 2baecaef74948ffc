"""`vigil hub hosts`, `vigil hub retire HOST`, `vigil hub revoke HOST` and
`vigil hub report daily`: the fleet as an operator handles it. They open the hub's database
themselves (it may be running: SQLite in WAL mode lets them), so they work
whether or not the hub answers. A running hub picks a retire or a revoke up
within a few seconds (its liveness check reads the flags)."""

from __future__ import annotations

import json
import time
from typing import Any

from hub import datadir
from hub.config import HubConfig
from hub.liveness import status_of
from hub.store import Store
from hub.store.configured import open_configured


def _open(config: HubConfig) -> Store:
    """The hub's database, private as the hub makes it (hub/datadir.py);
    or its PostgreSQL, with `[store] backend = "postgres"`."""
    if config.store.backend == "sqlite":
        datadir.prepare(config.hub.data_dir)
    return open_configured(config, set_aside_damaged=False)


def hosts(config: HubConfig) -> list[dict[str, Any]]:
    store = _open(config)
    try:
        reader = store.reader()
        firing: dict[str, int] = {}
        for alert in reader.alerts():
            if alert["state"] == "firing":
                firing[alert["host"]] = firing.get(alert["host"], 0) + 1
        now = time.time()
        out = [
            {
                "host": h["id"],
                "status": status_of(h, now, config.hub.silent_after),
                "last_seen": h["last_seen"],
                "agent_version": h["agent_version"],
                "firing_alerts": firing.get(h["id"], 0),
                "revoked": h["revoked"],
            }
            for h in reader.hosts()
        ]
        reader.close()
        return out
    finally:
        store.close()


def hosts_text(rows: list[dict[str, Any]], now: float) -> str:
    lines = [f"{'HOST':30} {'STATUS':8} {'LAST SEEN':>10} {'VERSION':10} ALERTS"]
    for r in rows:
        age = now - r["last_seen"]
        seen = f"{age:.0f}s ago" if age < 120 else f"{age / 60:.0f}m ago"
        status = r["status"] + (" (revoked)" if r["revoked"] else "")
        version = r["agent_version"] or "-"
        lines.append(f"{r['host']:30} {status:8} {seen:>10} {version:10} {r['firing_alerts']}")
    return "\n".join(lines) + "\n"


def set_flag(config: HubConfig, host: str, flag: str, on: bool) -> None:
    store = _open(config)
    try:
        store.set_flag(host, flag, on)
    finally:
        store.close()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"hosts": rows}, indent=2) + "\n"


def report(config: HubConfig, date: str | None, fmt: str) -> str:
    """`vigil hub report daily`: the report of `date` (YYYY-MM-DD; None:
    yesterday in the report's time zone) rendered as `fmt`. Reads the
    database read-only (`query_only`, beside a running hub: WAL lets it);
    raises BadDate for a bad date, OSError when there is no database."""
    import sqlite3

    from hub.reports.daily import daily
    from hub.reports.days import parse_date, yesterday, zone
    from hub.reports.render import render
    from hub.store.sqlite import SQLiteReader

    cfg = config.hub.reports
    tz = zone(cfg.timezone)
    day = yesterday(tz) if date is None else parse_date(date)
    if config.store.backend != "sqlite":
        store = open_configured(config)
        try:
            reader = store.reader()
            try:
                return render(daily(reader, day, tz, cfg.availability_target), fmt)
            finally:
                reader.close()
        finally:
            store.close()
    path = config.hub.data_dir / "hub.db"
    if not path.is_file():
        raise OSError(f"no hub database at {path} ([hub] data_dir in {config.source})")
    try:
        reader = SQLiteReader(path)
        try:
            return render(daily(reader, day, tz, cfg.availability_target), fmt)
        finally:
            reader.close()
    except sqlite3.Error as exc:
        raise OSError(f"{path}: {exc}") from exc
