"""The documentation covers what the code has: every metric a collector can
emit is in docs/metrics.md. (Every configuration key: tests/test_config_reference.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from agent.alerts.service import SPECS as ALERTING_SPECS
from agent.selfmetrics import SelfCollector
from agent.shipper import SPECS as SHIPPER_SPECS
from collectors import HOST_COLLECTORS
from collectors.checks.service import CheckCollector
from collectors.logs.tailer import LogCollector
from collectors.processes import SPECS as PROCESS_SPECS
from collectors.scrape import SCRAPE_SPECS, TEXTFILE_SPECS
from collectors.statsd import SPECS as STATSD_SPECS

DOCS = Path(__file__).parents[1] / "docs"


def test_every_metric_is_documented_once_with_its_type():
    text = (DOCS / "metrics.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (gauge|counter|summary) \|", text, re.M)
    documented = dict(rows)
    assert len(rows) == len(documented), "a metric is documented twice"
    specs = [s for cls in [*HOST_COLLECTORS.values(), SelfCollector] for s in cls.specs]
    specs += [*SHIPPER_SPECS, *LogCollector.specs, *ALERTING_SPECS, *CheckCollector.specs]
    specs += [*SCRAPE_SPECS, *TEXTFILE_SPECS, *PROCESS_SPECS, *STATSD_SPECS]
    for spec in specs:
        assert documented.get(spec.name) == spec.type, spec.name
    assert set(documented) == {s.name for s in specs}, "documented metrics nobody emits"
