"""[textfile] (collectors/scrape.py TextfileCollector) with literal files."""

from __future__ import annotations

import os

from collectors.scrape import TextfileCollector, TextfileSection


def test_a_fifo_or_a_directory_is_an_error_not_a_hang_and_the_rest_is_read(tmp_path):
    os.mkfifo(tmp_path / "a.prom")  # open() and read() of it would block for good
    (tmp_path / "b.prom").write_text("# TYPE ok gauge\nok 1\n")
    (tmp_path / "c.prom").mkdir()
    (tmp_path / "d.prom").write_text("broken{ 1\n")
    collector = TextfileCollector(TextfileSection(directory=tmp_path))
    records = {(r.name, tuple(r.labels.items())): r.value for r in collector.collect(1.0, 0.0)}
    errors = {
        os.path.basename(dict(labels)["file"]): value
        for (name, labels), value in records.items()
        if name == "textfile_scrape_error"
    }
    assert errors == {"a.prom": 1, "b.prom": 0, "c.prom": 1, "d.prom": 1}
    assert records[("ok", ())] == 1


def test_a_metric_the_agent_reports_itself_is_dropped_counted_and_named(tmp_path):
    """A textfile series named as one of the agent's own (cpu_usage_percent)
    would stand beside the agent's, and rules on it would see both."""
    (tmp_path / "a.prom").write_text(
        '# TYPE cpu_usage_percent gauge\ncpu_usage_percent{cpu="all"} 99\n'
        "# TYPE backup_ok gauge\nbackup_ok 1\n"
    )
    collector = TextfileCollector(
        TextfileSection(directory=tmp_path), frozenset({"cpu_usage_percent"})
    )
    records = {r.name: r.value for r in collector.collect(1.0, 0.0)}
    assert "cpu_usage_percent" not in records and records["backup_ok"] == 1
    assert records["textfile_samples_invalid_total"] == 1
    assert "cpu_usage_percent is the agent's own" in (collector.problem() or "")
