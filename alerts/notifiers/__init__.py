"""Notification channels behind :class:`alerts.notification.Notifier`.

:func:`build_notifier` turns one receiver's configuration (a mapping with
``type``: ``webhook``, ``cap``, ``mqtt`` or ``email``, a ``name``, and that
type's keys) into a notifier, validating it first: an invalid config raises
:class:`~cityeye.errors.ConfigError` naming the receiver and every field at
fault, never echoing values (so no secret leaks)::

    notifier = build_notifier({"name": "ops-hook", "type": "webhook",
                               "url": "https://ops.example/hook", "secret": "..."})
    await notifier.send(notification)

The keys of each type are listed in its module: :mod:`.webhook`,
:mod:`.cap`, :mod:`.mqtt`, :mod:`.email`.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, Union

from pydantic import Field, TypeAdapter, ValidationError

from alerts.notification import Notifier
from alerts.notifiers.cap import CapConfig, CapNotifier
from alerts.notifiers.email import EmailConfig, EmailNotifier
from alerts.notifiers.mqtt import MqttConfig, MqttNotifier
from alerts.notifiers.webhook import WebhookConfig, WebhookNotifier
from cityeye.errors import ConfigError

__all__ = ["NOTIFIER_TYPES", "NotifierConfig", "parse_notifier_config", "build_notifier"]

#: type -> (config model, notifier class)
NOTIFIER_TYPES: dict[str, tuple[type, type[Notifier]]] = {
    "webhook": (WebhookConfig, WebhookNotifier),
    "cap": (CapConfig, CapNotifier),
    "mqtt": (MqttConfig, MqttNotifier),
    "email": (EmailConfig, EmailNotifier),
}

NotifierConfig = Annotated[Union[WebhookConfig, CapConfig, MqttConfig, EmailConfig], Field(discriminator="type")]
_ADAPTER: TypeAdapter = TypeAdapter(NotifierConfig)


def parse_notifier_config(config: Mapping[str, Any]) -> WebhookConfig | CapConfig | MqttConfig | EmailConfig:
    """Validate one receiver's config; :class:`ConfigError` names the fields at fault."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"receiver config must be a mapping, not {type(config).__name__}")
    name = str(config.get("name", "?"))[:80]
    kind = config.get("type")
    if kind not in NOTIFIER_TYPES:
        raise ConfigError(f"receiver {name!r}: type must be one of {', '.join(NOTIFIER_TYPES)}, not {str(kind)[:40]!r}")
    try:
        return _ADAPTER.validate_python(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"receiver {name!r} ({kind}): {problems}") from None


def build_notifier(config: Mapping[str, Any]) -> Notifier:
    """The :class:`Notifier` for one receiver config (see the module docstring)."""
    parsed = parse_notifier_config(config)
    return NOTIFIER_TYPES[parsed.type][1](parsed)
