"""Detectors beyond plain patterns, one module each behind one interface
(base.py). Importing a module registers its detector in `DETECTORS`; the
line below names them (the order here is the order they run in and are
listed in), and their modules load the first time a `[[logs]]` table needs
them: an agent that tails no log loads none."""

from collectors.logs.detectors.base import DETECTORS

for _name, _module in (("auth", "auth"), ("volume", "volume"), ("new_errors", "signatures")):
    DETECTORS.lazy(_name, f"collectors.logs.detectors.{_module}")
