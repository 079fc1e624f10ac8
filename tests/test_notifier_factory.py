"""build_notifier: one factory for every channel, validated configs, no secret in errors."""

from __future__ import annotations

import pytest

from alerts.notifiers import build_notifier
from alerts.notifiers.cap import CapNotifier
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.mqtt import MqttNotifier
from alerts.notifiers.webhook import WebhookNotifier
from cityeye.errors import ConfigError


@pytest.mark.parametrize("config, cls", [
    ({"type": "webhook", "url": "https://ops.example.cn/hook"}, WebhookNotifier),
    ({"type": "cap", "sender": "cityeye@ops", "url": "https://cap.example.cn/in"}, CapNotifier),
    ({"type": "mqtt", "host": "broker", "topic_template": "boards/{district}"}, MqttNotifier),
    ({"type": "email", "sender": "a@ops.cn", "recipients": ["b@ops.cn"]}, EmailNotifier),
])
def test_each_type_builds_its_notifier(config, cls):
    notifier = build_notifier({"name": "r1", **config})
    assert isinstance(notifier, cls) and notifier.name == "r1"


@pytest.mark.parametrize("config, expected", [
    ({"name": "r", "type": "pager"}, "type must be one of webhook, cap, mqtt, email"),
    ({"name": "r", "type": "webhook"}, "url: Field required"),
    ({"name": "r", "type": "webhook", "url": "https://x/y", "timeout_s": -1}, "timeout_s"),
    ({"name": "r", "type": "webhook", "url": "https://x/y", "retries": 3}, "retries: Extra inputs"),
    ({"type": "webhook", "url": "https://x/y"}, "name: Field required"),
    ({"name": "r", "type": "email", "sender": "no-at-sign", "recipients": ["b@c"]}, "sender"),
    ({"name": "r", "type": "email", "sender": "a@b", "recipients": ["b@c"], "ssl": True, "starttls": True},
     "at most one of ssl and starttls"),
])
def test_invalid_configs_name_the_field(config, expected):
    with pytest.raises(ConfigError) as info:
        build_notifier(config)
    assert expected in str(info.value)


def test_secret_values_are_not_echoed_in_errors():
    with pytest.raises(ConfigError) as info:
        build_notifier({"name": "r", "type": "webhook", "url": "not a url", "secret": ["sup3r-secret"]})
    assert "sup3r-secret" not in str(info.value)
    assert "secret" in str(info.value) and "url" in str(info.value)


def test_non_mapping_config():
    with pytest.raises(ConfigError, match="mapping"):
        build_notifier(["webhook"])
