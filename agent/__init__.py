"""vigil: a lightweight monitoring agent and the hub its fleet pushes to."""

__version__ = "0.1.0"
