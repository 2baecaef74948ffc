"""Synthetic checks: probe the services a host depends on, the way a user
reaches them (docs/checks.md). One module per check type, each an async
`probe(cfg, ctx) -> Outcome` (model.py); PROBES maps a type to it."""
