"""The gateway's intake probe: how it learns, and tells the workers, that its intake is complete up to a time.

Every ``ingest.intake_progress_interval_s`` the gateway publishes its wall
time on its own MQTT topic (:func:`cityeye.intake_progress.probe_topic`,
subscribed by this gateway alone, never through the shared subscription) and
reads it back through its intake like any message. The broker hands a
session's messages over in order, so when the probe sent at ``t`` comes
back, every device message queued for this gateway before ``t`` was taken
ahead of it; once the batch holding the probe is in Kafka (the acker), the
gateway sends an :class:`~cityeye.intake_progress.IntakeProgress` record
``until=t`` to every partition of the readings topics it writes. A starved,
paused or backlogged gateway sends its probes late or not at all, and the
workers stop ageing its partitions' sensors (streams/clocks.py) instead of
calling them silent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from cityeye.intake_progress import IntakeProgress, probe_topic

__all__ = ["IntakeProbe"]

log = logging.getLogger(__name__)


class IntakeProbe:
    """One gateway's probe topic, the probes it sends, and the progress records they become.

    Parameters
    ----------
    gateway
        The gateway's MQTT client id (names its probe topic and its progress).
    clock
        The wall clock (unix seconds) the probes carry.
    """

    def __init__(self, gateway: str, clock: Callable[[], float]) -> None:
        self.gateway = gateway
        self.topic = probe_topic(gateway)
        self._clock = clock

    def until_of(self, payload: bytes) -> float | None:
        """The time a probe read back was sent; None for a payload that is not one (never raises)."""
        try:
            until = float(payload[:64])
        except (ValueError, TypeError):
            return None
        return until if math.isfinite(until) else None

    async def run(self, publish: Callable[[str, bytes], None], interval: float) -> None:
        """Publish a probe every ``interval`` seconds through ``publish(topic, payload)``."""
        while True:
            await asyncio.sleep(interval)
            try:
                publish(self.topic, repr(self._clock()).encode())
            except Exception as exc:  # not connected: the next probe tries again
                log.debug("intake probe not published (%s)", type(exc).__name__)

    async def send_progress(self, producer: Any, partitions: Mapping[str, int], until: float) -> None:
        """Send the progress ``until`` (a probe's time, now in Kafka with all that came before it) to every
        partition of ``partitions`` (readings topic -> partition count), behind the records already there.

        Best effort: a record Kafka does not take is superseded by the next probe's.
        """
        progress = IntakeProgress(self.gateway, until)
        value, headers = progress.to_json(), list(progress.HEADERS)
        for topic, count in list(partitions.items()):
            for partition in range(count):
                try:
                    sent = await producer.send(topic, value, partition=partition, headers=headers)
                except Exception as exc:  # KafkaError and anything else the client raises
                    log.debug("intake progress not sent to %s[%d] (%s)", topic, partition, type(exc).__name__)
                    continue
                sent.add_done_callback(_ignore_failure)


def _ignore_failure(future: asyncio.Future) -> None:
    """Retrieve a best-effort send's outcome (a failure is superseded by the next send)."""
    if not future.cancelled():
        future.exception()
