"""Plugins of one kind, registered by their own modules.

A host collector, a check type, a notifier and a log detector each live in
one module that registers itself here with its config class; the config
schema is assembled from the registries (see `schema`), so adding a plugin
touches no central list. The package of each kind imports its plugin
modules, one line each (as Telegraf's plugins/inputs/all does), which is
what registers them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

P = TypeVar("P")


class Registry(Generic[P]):
    """Name -> plugin. `config_of(plugin)` is the plugin's config section
    class (None when it takes no options); `kind` names it in errors
    ("check type", "notifier type")."""

    def __init__(self, kind: str, config_of: Callable[[P], type[Any] | None]) -> None:
        self.kind = kind
        self.config_of = config_of
        self._plugins: dict[str, P] = {}

    def add(self, name: str, plugin: P) -> P:
        if name in self._plugins:
            raise RuntimeError(f"{self.kind} {name!r} is registered twice")
        self._plugins[name] = plugin
        return plugin

    @contextlib.contextmanager
    def scope(self) -> Iterator[Registry[P]]:
        """What is registered inside is gone afterwards (tests add plugins)."""
        saved = dict(self._plugins)
        try:
            yield self
        finally:
            self._plugins = saved

    def register(self, name: str) -> Callable[[P], P]:
        """A class decorator: `@CHECK_TYPES.register("http")`."""
        return lambda plugin: self.add(name, plugin)

    def __getitem__(self, name: str) -> P:
        return self._plugins[name]

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def __iter__(self) -> Iterator[str]:
        return iter(self._plugins)

    def __len__(self) -> int:
        return len(self._plugins)

    def values(self) -> list[P]:
        return list(self._plugins.values())

    def items(self) -> list[tuple[str, P]]:
        return list(self._plugins.items())

    def configs(self) -> dict[str, type[Any]]:
        """Name -> config class, for the plugins that take options."""
        out = {}
        for name, plugin in self._plugins.items():
            cls = self.config_of(plugin)
            if cls is not None:
                out[name] = cls
        return out
