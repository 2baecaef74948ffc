"""Synthetic checks: probe the services a host depends on, the way a user
reaches them (docs/checks.md). A check type is one module: its config
class (a `CheckConfig` with its keys and its `probe`), registered in
`config.CHECK_TYPES`. Importing it registers it: one line per type."""

from collectors.checks import (
    command,  # noqa: F401
    dns,  # noqa: F401
    http,  # noqa: F401
    tcp,  # noqa: F401
    tls,  # noqa: F401
)
