"""The base layer: what every other part of vigil builds on, importing
nothing else of the project (tests/test_architecture.py holds it to that).

records     what collectors produce, and `encodable` for outside values
schema      typed, frozen config sections from TOML, errors naming the key
configfile  TOML files, listen addresses, default state directories
protocol    the agent -> hub wire format, shared by both sides
atomic      crash-safe writes (temporary file, fsync, rename, fsync)
checkpoint  state committed in step with a buffer (log offsets, cursors)
statedir    the lock on a state directory
sdnotify    systemd's notify socket
logsetup    structlog as JSON lines on stdout
"""
