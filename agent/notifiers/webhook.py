"""webhook: POSTs the alert JSON, or {"text": ...} for Slack-compatible
hooks (Slack, Mattermost, Rocket.Chat), through the durable queue."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.notifiers.base import NOTIFIER_TYPES
from agent.notifiers.payloads import slack_text
from agent.notifiers.queue import RemoteConfig, RemoteNotifier


@dataclass(frozen=True, kw_only=True)
class WebhookConfig(RemoteConfig):
    format: Literal["json", "slack"] = "json"


@NOTIFIER_TYPES.register("webhook")
class WebhookNotifier(RemoteNotifier[WebhookConfig]):
    Config = WebhookConfig

    def render(self, alerts: Sequence[Mapping[str, Any]]) -> bytes:
        (alert,) = alerts
        if self.config.format == "slack":
            return json.dumps({"text": slack_text(alert)}).encode()
        return json.dumps(alert).encode()
