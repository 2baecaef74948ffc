"""The daily operations report (issue 14, item 4; docs/hub.md, "Reports").

- `daily.py` builds it from a store reader: one dict in the fixed JSON
  shape, plus the keys the shape leaves room for;
- `render.py` writes it as JSON, Markdown or standalone HTML;
- `schedule.py` sends it through `[hub.reports] notify` at `daily_at`;
- `http.py` serves `GET /v1/reports/daily`.

`vigil hub report daily` (hub/tool.py) and the endpoint build the same
report from the same reader calls. Imported only when a report is asked
for or scheduled: the idle hub does not carry it.
"""
