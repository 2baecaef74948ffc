"""Synthetic checks: probe the services a host depends on, the way a user
reaches them (docs/checks.md). A check type is one module: its config
class (a `CheckConfig` with its keys and its `probe`), registered in
`config.CHECK_TYPES` when imported. The line below names them; a type's
module is imported the first time a config looks it up, so an agent with
no checks loads none of them."""

from collectors.checks.config import CHECK_TYPES

for _name in ("command", "dns", "http", "tcp", "tls"):
    CHECK_TYPES.lazy(_name, f"collectors.checks.{_name}")
