"""Collectors: one module per source. A host collector registers itself
with `@host_collector` (collectors/base.py) and declares its `Options`;
importing its module here, one line each, is what registers it, in the
order `vigil once` shows them."""

from __future__ import annotations

# In the order `vigil once` shows them, not the alphabet's.
from collectors import cpu, load, memory, disk, diskio, network, system  # noqa: F401  # isort: skip
from collectors.base import HOST_COLLECTORS

__all__ = ["HOST_COLLECTORS"]
