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
