"""The central collector (`vigil hub run`).

`config` (the hub's TOML), `auth` (host tokens, the read token), `ingest`
(`POST /v1/ingest`), `read` (the read API), `health` (`/healthz`), `app`
(the routes and threads), `server` (the process), `reload` (SIGHUP, and
the file checks of `vigil hub check-config`), `datadir` (a private data
directory and database), `store` (the storage
interface, with the exactly-once rules) and `store.sqlite` (the embedded
backend). It imports
only the base layer, `agent/core/`: the wire schema is shared with the
agent through `agent/core/protocol.py`.
"""
