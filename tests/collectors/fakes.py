"""A HostSource that replays recorded values, one step at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.source import FsUsage, Mount


class RecordedSource:
    """Each method returns the value recorded for the current step; `step()` advances.
    A value that is an Exception is raised instead, as a failing system call would."""

    def __init__(self, **series: Sequence[Any]) -> None:
        self.series = series
        self.index = 0
        self.kinds: dict[str, str] = {}
        self.fs: dict[str, FsUsage | Exception] = {}

    def step(self) -> None:
        self.index += 1

    def _now(self, name: str) -> Any:
        values = self.series[name]
        value = values[min(self.index, len(values) - 1)]
        if isinstance(value, Exception):
            raise value
        return value

    def cpu_times(self) -> dict[str, dict[str, float]]:
        return self._now("cpu_times")

    def cpu_count(self) -> int:
        return self._now("cpu_count")

    def load_average(self) -> tuple[float, float, float]:
        return self._now("load_average")

    def memory(self) -> dict[str, float]:
        return self._now("memory")

    def swap(self) -> dict[str, float]:
        return self._now("swap")

    def mounts(self) -> list[Mount]:
        return self._now("mounts")

    def fs_usage(self, mountpoint: str) -> FsUsage:
        value = self.fs[mountpoint]
        if isinstance(value, Exception):
            raise value
        return value

    def disk_io(self) -> dict[str, dict[str, float]]:
        return self._now("disk_io")

    def net_io(self) -> dict[str, dict[str, float]]:
        return self._now("net_io")

    def interface_kind(self, name: str) -> str:
        return self.kinds.get(name, "physical")

    def boot_time(self) -> float:
        return self._now("boot_time")

    def process_count(self) -> int:
        return self._now("process_count")

    def open_files(self) -> tuple[int, int]:
        return self._now("open_files")


def by_key(records: Sequence[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(name, sorted labels): value} for easy assertions."""
    return {(r.name, tuple(sorted(r.labels.items()))): r.value for r in records}
