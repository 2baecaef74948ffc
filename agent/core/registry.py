"""Plugins of one kind, registered by their own modules.

A host collector, a check type, a notifier and a log detector each live in
one module that registers itself here with its config class; the config
schema is assembled from the registries (see `schema`), so adding a plugin
touches no central list. The package of each kind imports its plugin
modules, one line each (as Telegraf's plugins/inputs/all does), which is
what registers them; or, where a plugin is heavy and most hosts do not use
it (check types, notifier types), names its module with `lazy`: it is
imported the first time it is looked up, so nothing loads for a feature
that is not configured.
"""

from __future__ import annotations

import contextlib
import importlib
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
        # every name, in the order declared or registered: its module while
        # not imported yet (`lazy`), None once registered
        self._names: dict[str, str | None] = {}

    def add(self, name: str, plugin: P) -> P:
        if name in self._plugins:
            raise RuntimeError(f"{self.kind} {name!r} is registered twice")
        self._plugins[name] = plugin
        self._names[name] = None
        return plugin

    def lazy(self, name: str, module: str) -> None:
        """`name` is registered by importing `module`, when first looked up."""
        if name not in self._plugins:
            self._names[name] = module

    def _load(self, name: str) -> None:
        module = self._names.get(name)
        if module is not None:
            importlib.import_module(module)
            if name not in self._plugins:
                raise RuntimeError(f"{module} did not register {self.kind} {name!r}")

    def _load_all(self) -> None:
        for name in list(self._names):
            self._load(name)

    @contextlib.contextmanager
    def scope(self) -> Iterator[Registry[P]]:
        """What is registered inside is gone afterwards (tests add plugins).
        Lazy plugins are loaded first: one imported inside would be gone
        afterwards while its module, already imported, never registers again."""
        self._load_all()
        saved, names = dict(self._plugins), dict(self._names)
        try:
            yield self
        finally:
            self._plugins, self._names = saved, names

    def register(self, name: str) -> Callable[[P], P]:
        """A class decorator: `@CHECK_TYPES.register("http")`."""
        return lambda plugin: self.add(name, plugin)

    def __getitem__(self, name: str) -> P:
        self._load(name)
        return self._plugins[name]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def values(self) -> list[P]:
        return [plugin for _, plugin in self.items()]

    def items(self) -> list[tuple[str, P]]:
        self._load_all()
        return [(name, self._plugins[name]) for name in self._names]

    def configs(self) -> dict[str, type[Any]]:
        """Name -> config class, for the plugins that take options."""
        out = {}
        for name, plugin in self.items():
            cls = self.config_of(plugin)
            if cls is not None:
                out[name] = cls
        return out
