"""MQTT publishing for the simulators (and tests, benches): QoS 1, paced.

:class:`MqttPublisher` wraps a paho 2.x client running its network thread;
:meth:`MqttPublisher.publish` queues a message and :meth:`MqttPublisher.flush`
waits until the broker has acknowledged everything published so far.
:class:`DevicePublishers` publishes as the devices themselves, one connection and account each.
:func:`publish_paced` sends timestamped messages on an accelerated clock:
simulated time ``t`` is published at real time ``(t - t0) / speed`` after
the start.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pydantic import SecretStr

from cityeye.config import MqttSettings
from cityeye.device_credentials import MqttCredentials
from cityeye.errors import ConfigError

__all__ = ["MqttPublisher", "DevicePublishers", "publish_paced"]

log = logging.getLogger(__name__)


class MqttPublisher:
    """A connected QoS 1 publisher; use as a context manager or ``connect()``/``close()``."""

    #: at most this many messages published and not yet acknowledged (paho numbers them with 16-bit ids:
    #: publishing far ahead of the broker's acks fails with "Message queue full" once 65,535 are pending)
    window = 2000

    def __init__(self, settings: MqttSettings, client_id: str | None = None, max_inflight: int = 100,
                 username: str | None = None, password: SecretStr | None = None) -> None:
        self.settings = settings
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"cityeye-pub-{uuid.uuid4().hex[:8]}",
                                  clean_session=True, protocol=mqtt.MQTTv311)
        settings.configure_client(self.client, username, password)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self._acked = threading.Condition()
        self.published = 0
        self.acknowledged = 0
        #: the most messages ever waiting for their acknowledgement at once
        self.max_unacknowledged = 0

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._acked:
            self.acknowledged += 1
            self._acked.notify_all()

    def connect(self, timeout: float = 10.0) -> "MqttPublisher":
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
        self.client.connect(self.settings.host, self.settings.port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(timeout):
            self.close()
            raise ConnectionError(f"MQTT broker {self.settings.host}:{self.settings.port} did not accept "
                                  f"the connection within {timeout:.0f} s")
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        # never hold our lock around paho calls: paho calls _on_publish holding its own locks
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise ConnectionError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._acked:
            self.published += 1
            self.max_unacknowledged = max(self.max_unacknowledged, self.published - self.acknowledged)

    @property
    def unacknowledged(self) -> int:
        return self.published - self.acknowledged

    def wait_below(self, limit: int, timeout: float = 60.0) -> None:
        """Block until fewer than ``limit`` published messages wait for their acknowledgement."""
        deadline = time.monotonic() + timeout
        with self._acked:
            while self.published - self.acknowledged >= limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"MQTT broker acknowledged {self.acknowledged} of {self.published} "
                                       f"messages within {timeout:.0f} s")
                self._acked.wait(left)

    def flush(self, timeout: float = 60.0) -> None:
        """Block until the broker acknowledged every message published so far (QoS 1)."""
        deadline = time.monotonic() + timeout
        with self._acked:
            target = self.published
            while self.acknowledged < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"MQTT broker acknowledged {self.acknowledged} of {target} messages "
                                       f"within {timeout:.0f} s")
                self._acked.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "MqttPublisher":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


class DevicePublishers:
    """Publishes each device's messages over its own connection and account (``mqtt.device_credentials``).

    The same interface as :class:`MqttPublisher`, for :func:`publish_paced`; a
    message goes out on the connection of the sensor its topic ends with, so
    a broker allowing each device only its own topic accepts every message.
    """

    window = MqttPublisher.window

    def __init__(self, settings: MqttSettings, credentials: MqttCredentials, sensor_ids: Iterable[str],
                 client_prefix: str) -> None:
        self.publishers: dict[str, MqttPublisher] = {}
        for sensor_id in sensor_ids:
            password = credentials.devices.get(sensor_id)
            if password is None:
                raise ConfigError(f"no MQTT credentials for device {sensor_id!r} in {settings.device_credentials} "
                                  "(run cityeye devices export-acl)")
            self.publishers[sensor_id] = MqttPublisher(settings, client_id=f"{client_prefix}-{sensor_id}",
                                                       username=sensor_id, password=password)

    def connect(self, timeout: float = 10.0) -> "DevicePublishers":
        try:
            for publisher in self.publishers.values():
                publisher.connect(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.publishers[topic.rsplit("/", 1)[-1]].publish(topic, payload, qos)

    @property
    def unacknowledged(self) -> int:
        return sum(p.unacknowledged for p in self.publishers.values())

    def wait_below(self, limit: int, timeout: float = 60.0) -> None:
        share = max(1, limit // max(1, len(self.publishers)))
        for publisher in self.publishers.values():
            publisher.wait_below(share, timeout)

    def flush(self, timeout: float = 60.0) -> None:
        for publisher in self.publishers.values():
            publisher.flush(timeout)

    def close(self) -> None:
        for publisher in self.publishers.values():
            publisher.close()


async def publish_paced(publisher: MqttPublisher | DevicePublishers, messages: Iterable[tuple[float, str, bytes]], *,
                        speed: float, t0: float, stop_event: asyncio.Event | None = None) -> int:
    """Publish ``(sim_ts, topic, payload)`` in order, each at its accelerated time.

    ``speed`` is simulated seconds per real second (``0`` or less: as fast
    as the broker acknowledges: at most :attr:`MqttPublisher.window`
    messages are ever waiting for their acknowledgement). Returns how many were published (fewer if ``stop_event``
    was set). Waits for the broker's acks of everything before returning.
    """
    loop = asyncio.get_running_loop()
    real0 = loop.time()
    count = 0
    for sim_ts, topic, payload in messages:
        if stop_event is not None and stop_event.is_set():
            break
        if speed > 0:
            delay = real0 + (sim_ts - t0) / speed - loop.time()
            if delay > 0:
                if stop_event is None:
                    await asyncio.sleep(delay)
                else:
                    try:
                        await asyncio.wait_for(stop_event.wait(), delay)
                        break
                    except asyncio.TimeoutError:
                        pass
        if publisher.unacknowledged >= publisher.window - 1:  # pace on the broker's acknowledgements
            await asyncio.to_thread(publisher.wait_below, publisher.window // 2)
        publisher.publish(topic, payload)
        count += 1
        if count % 1000 == 0:
            await asyncio.sleep(0)  # let the loop breathe on fast replays
    await asyncio.to_thread(publisher.flush)
    return count
