"""The central collector (`vigil hub run`): not built yet.

Its ingest API, store and read API are the subject of the delivery issue;
this package exists so the layout in DESIGN.md is in place. It must never
import `collectors`; the wire schema it shares with the agent will live in
`agent/protocol.py`.
"""
