"""The dispatcher's view of device health: the latest ``devices.health`` record per device.

The gateway publishes each registered device's :class:`DeviceHealth` every
``ingest.health_interval_s`` (keyed by sensor id). :class:`DeviceHealthView`
reads the topic from its start (no consumer group, nothing committed: every
dispatcher keeps its own copy) and keeps the newest record of each device;
``GET /api/v1/devices`` serves them. A record that does not parse is logged
(counted) and skipped: one bad record never stops the view.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from cityeye.config import KafkaSettings
from cityeye.consume import Batches, consume
from cityeye.device_health import TOPIC_DEVICES_HEALTH, DeviceHealth
from cityeye.kafka import make_consumer

__all__ = ["DeviceHealthView"]

log = logging.getLogger(__name__)


class DeviceHealthView:
    """Newest :class:`DeviceHealth` per sensor id; :meth:`run` keeps it current."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceHealth] = {}
        #: records that were not device-health records (skipped)
        self.malformed = 0

    def apply(self, batches: Batches) -> None:
        """Take the newest record of each device from a fetched batch (older ones never replace newer)."""
        for records in batches.values():
            for record in records:
                try:
                    health = DeviceHealth.from_json(record.value)
                except (ValueError, TypeError, KeyError) as exc:
                    self.malformed += 1
                    if self.malformed == 1 or self.malformed % 1000 == 0:
                        log.warning("skipping a malformed %s record at offset %d (%d so far): %s",
                                    TOPIC_DEVICES_HEALTH, record.offset, self.malformed, str(exc)[:200])
                    continue
                known = self.devices.get(health.sensor_id)
                if known is None or health.updated_at >= known.updated_at:
                    self.devices[health.sensor_id] = health

    def get(self, sensor_id: str) -> DeviceHealth | None:
        return self.devices.get(sensor_id)

    async def run(self, kafka: KafkaSettings, stop: asyncio.Event) -> None:
        """Follow the topic until ``stop`` is set, reconnecting after a Kafka error."""
        while not stop.is_set():
            consumer = make_consumer(kafka, TOPIC_DEVICES_HEALTH, group=None)
            try:
                await consumer.start()
                await consume(consumer, self.apply, stop, max_records=None, name="device-health")
            except Exception as exc:  # KafkaError or a bug: device health must not take the dispatcher down
                log.warning("reading %s failed (%s: %s); retrying in 2 s", TOPIC_DEVICES_HEALTH,
                            type(exc).__name__, str(exc)[:200], exc_info=not isinstance(exc, KafkaError))
                await asyncio.sleep(2)
            finally:
                await consumer.stop()
