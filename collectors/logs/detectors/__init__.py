"""Detectors beyond plain patterns, one module each behind one interface
(base.py). Importing a module registers its detector in `DETECTORS`; the
order here is the order they run in and are listed in."""

# isort: skip_file

from collectors.logs.detectors import auth as auth
from collectors.logs.detectors import volume as volume
from collectors.logs.detectors import signatures as signatures
