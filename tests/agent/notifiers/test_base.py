"""The [[notifiers]] table: common keys, each type's own keys and rules,
errors naming the key path."""

from __future__ import annotations

import pytest

from agent.core.schema import ConfigError
from tests.agent.notifiers.common import cfg


def test_defaults():
    c = cfg(name="ops", type="webhook", url="https://hooks.example/x")
    assert c.severities == () and c.resolved is True
    assert (c.timeout, c.max_backoff, c.max_queued, c.format) == (10.0, 300.0, 10_000, "json")
    e = cfg(name="restart-app", type="exec", command=["/usr/local/bin/restart-app"])
    assert (e.max_concurrent, e.max_per_hour, e.timeout) == (2, 20, 10.0)
    assert cfg(name="am", type="alertmanager", url="http://127.0.0.1:9093").resend_interval == 60


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "journal"}, "test.toml: notifiers[0].name: required"),
        (
            {"name": "x", "type": "pager"},
            "notifiers[0].type: expected one of 'alertmanager', 'exec', 'file', 'journal', "
            "'webhook', got 'pager'",
        ),
        ({"name": "a/b", "type": "journal"}, "notifiers[0].name: must be 1 to 64 letters"),
        ({"name": ".hidden", "type": "journal"}, "notifiers[0].name: must be 1 to 64 letters"),
        ({"name": "x", "type": "exec"}, 'notifiers[0].command: type "exec" needs command'),
        ({"name": "x", "type": "exec", "command": [""]}, "notifiers[0].command: the program"),
        ({"name": "x", "type": "file"}, 'notifiers[0].path: type "file" needs path'),
        ({"name": "x", "type": "webhook"}, 'notifiers[0].url: type "webhook" needs url'),
        ({"name": "x", "type": "alertmanager"}, 'url: type "alertmanager" needs url'),
        (
            {"name": "x", "type": "webhook", "url": "ftp://h/x"},
            "notifiers[0].url: expected an http:// or https:// URL",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h:99999/x"},
            "notifiers[0].url: expected an http:// or https:// URL",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h/x", "command": ["true"]},
            "notifiers[0].command: not used by type 'webhook' (only by 'exec')",
        ),
        (
            {"name": "x", "type": "alertmanager", "url": "http://h", "format": "slack"},
            "notifiers[0].format: not used by type 'alertmanager' (only by 'webhook')",
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "path": "/tmp/x"},
            "notifiers[0].path: not used by type 'exec' (only by 'file')",
        ),
        (
            {"name": "x", "type": "file", "path": "/tmp/x", "timeout": "1s"},
            "notifiers[0].timeout: not used by type 'file' (only by 'alertmanager', 'exec', "
            "'webhook')",
        ),
        (
            {"name": "x", "type": "journal", "severities": ["high", "urgent"]},
            "notifiers[0].severities[1]: expected one of critical, high, medium, low",
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "max_concurrent": 0},
            "notifiers[0].max_concurrent: must be at least 1",
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "timeout": 5},
            "notifiers[0].timeout: expected a duration",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h/x", "format": "teams"},
            "notifiers[0].format: expected one of 'json', 'slack'",
        ),
        (
            {"name": "x", "type": "webhook", "url": "http://h/x", "headers": {"A": "b\nc"}},
            "notifiers[0].headers: header 'A'",
        ),
        (
            {"name": "x", "type": "exec", "command": ["true"], "comand": ["x"]},
            'notifiers[0].comand: unknown key (did you mean "command"?)',
        ),
    ],
)
def test_config_errors_name_the_key(data, expected):
    with pytest.raises(ConfigError) as err:
        cfg(**data)
    assert expected in str(err.value)
