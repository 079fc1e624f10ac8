"""MQTT channel: compact JSON for road display boards, sirens and other devices.

Each alert of the notification is placed on the topic rendered from
``topic_template`` (placeholders: ``district``, ``severity``, ``kind``,
``rule``, ``sensor_id``, ``status``, ``receiver``; values have ``/``, ``+``,
``#`` replaced by ``_`` so they stay one topic level); alerts that land on
the same topic travel in one message. Messages are published with QoS 1
(or 2) and ``send`` returns only once the broker acknowledged every one
(PUBACK/PUBCOMP). The payload carries the notification ``id`` so devices
can drop duplicates.

Config keys: ``name``, ``type: mqtt``, ``host``, ``port``, ``username``,
``password``, ``client_id``, ``topic_template`` (default
``cityeye/out/{district}/{severity}``), ``qos``, ``retain``, ``timeout_s``,
``tls``.

Refused or lost connections and missing acknowledgements are retryable;
a broker that refuses the credentials or the client is a permanent error.
"""

from __future__ import annotations

import asyncio
import json
import string
import threading
from typing import Literal

import paho.mqtt.client as paho
from pydantic import Field, SecretStr, field_validator

from alerts.model import AlertSnapshot
from alerts.notification import Notification, Notifier
from alerts.notifiers.common import ChannelConfig, scrubbed
from cityeye.config import MqttTls
from cityeye.contracts import SEVERITY_RANK
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["MqttConfig", "MqttNotifier", "TOPIC_FIELDS", "mqtt_messages"]

TOPIC_FIELDS = ("district", "severity", "kind", "rule", "sensor_id", "status", "receiver")


class MqttConfig(ChannelConfig):
    type: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    topic_template: str = "cityeye/out/{district}/{severity}"
    qos: Literal[1, 2] = 1
    retain: bool = False
    timeout_s: float = Field(10.0, gt=0, le=300)
    #: ``true`` (the system's CAs) or ``{enabled, ca_file, cert_file, key_file}``
    tls: MqttTls = MqttTls()

    @field_validator("topic_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = names - set(TOPIC_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {', '.join(TOPIC_FIELDS)}")
        if "+" in value.replace("{", "").replace("}", "") or "#" in value or not value:
            raise ValueError("must be a topic name without wildcards")
        return value


def _level(value: str) -> str:
    cleaned = "".join("_" if c in "/+#\0" else c for c in value)
    return cleaned or "_"


def _compact(a: AlertSnapshot) -> dict:
    return {"id": a.alert_id, "sensor": a.sensor_id, "name": a.sensor_name, "kind": a.kind,
            "district": a.district, "rule": a.rule, "sev": a.severity, "state": a.state,
            "value": a.value, "threshold": a.threshold, "msg": a.message, "lat": a.lat, "lon": a.lon}


def mqtt_messages(notification: Notification, template: str) -> dict[str, bytes]:
    """Topic -> JSON payload for ``notification`` under ``template``."""
    n = notification
    by_topic: dict[str, list[AlertSnapshot]] = {}
    for a in n.alerts:
        values = {"district": a.district, "severity": a.severity, "kind": a.kind, "rule": a.rule,
                  "sensor_id": a.sensor_id, "status": n.status, "receiver": n.receiver}
        topic = template.format(**{k: _level(str(v)) for k, v in values.items()})
        by_topic.setdefault(topic, []).append(a)
    out = {}
    for topic, alerts in by_topic.items():
        firing = [a for a in alerts if a.state == "firing"] or alerts
        payload = {"id": n.id, "status": n.status, "reason": n.reason, "group": n.group_key,
                   "severity": max((a.severity for a in firing), key=lambda s: SEVERITY_RANK.get(s, 0)),
                   "ts": n.created_at, "summary": n.summary, "alerts": [_compact(a) for a in alerts]}
        out[topic] = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    return out


class MqttNotifier(Notifier):
    """Publishes notifications with paho-mqtt (one connection, reused, reopened when lost)."""

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.name = config.name
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._connack: paho.ReasonCode | None = None
        self._lock = asyncio.Lock()

    async def send(self, notification: Notification) -> None:
        messages = mqtt_messages(scrubbed(notification), self.config.topic_template)
        if not messages:
            return
        async with self._lock:
            await asyncio.to_thread(self._publish_all, messages)

    def _where(self) -> str:
        return f"MQTT broker {self.config.host}:{self.config.port}"

    def _connect(self) -> paho.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        self._drop()
        c = self.config
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=c.client_id or f"cityeye-notifier-{c.name}")
        if c.username:
            client.username_pw_set(c.username, c.password.get_secret_value() if c.password else None)
        tls = c.tls.tls_set_kwargs()
        if tls is not None:
            client.tls_set(**tls)
        client.connect_timeout = c.timeout_s
        self._connected.clear()
        self._connack = None

        def on_connect(_client, _userdata, _flags, reason_code, _props):
            self._connack = reason_code
            self._connected.set()

        client.on_connect = on_connect
        try:
            client.connect(c.host, c.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise RetryableDeliveryError(f"{self._where()} unreachable: {type(exc).__name__}") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(c.timeout_s):
            self._drop()
            raise RetryableDeliveryError(f"{self._where()}: no CONNACK within {c.timeout_s:g} s")
        if self._connack is not None and self._connack.is_failure:
            reason = str(self._connack)
            self._drop()
            raise PermanentDeliveryError(f"{self._where()} refused the connection: {reason}")
        return client

    def _publish_all(self, messages: dict[str, bytes]) -> None:
        client = self._connect()
        infos = []
        for topic, payload in messages.items():
            info = client.publish(topic, payload, qos=self.config.qos, retain=self.config.retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                self._drop()
                raise RetryableDeliveryError(f"{self._where()}: publish failed ({paho.error_string(info.rc)})")
            infos.append(info)
        for info in infos:
            try:
                info.wait_for_publish(self.config.timeout_s)
            except (RuntimeError, ValueError) as exc:
                self._drop()
                raise RetryableDeliveryError(f"{self._where()}: publish not acknowledged ({exc})") from None
            if not info.is_published():
                self._drop()
                raise RetryableDeliveryError(f"{self._where()}: no acknowledgement within {self.config.timeout_s:g} s")

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._drop)
