"""The central collector (`vigil hub run`): ingest API, store, read API.

`config` (the hub's TOML), `store` (SQLite, durable and idempotent),
`app` (the HTTP handlers), `server` (the process). It shares the wire
schema with the agent through `agent/core/protocol.py` and never imports
`collectors`.
"""
