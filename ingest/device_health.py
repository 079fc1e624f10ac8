"""Per-device counters kept by the gateway, turned into :class:`DeviceHealth` records.

One :class:`_Counters` per registered sensor (unregistered ids are not
tracked: random ids must not grow memory; the gateway counts them as
``unknown_sensor`` dead letters). :meth:`DeviceHealthTracker.snapshot`
returns every registered device's record with its rates over the time since
the previous snapshot; the gateway publishes them to ``devices.health``.
"""

from __future__ import annotations

from cityeye.contracts import DeadLetter, Reading
from cityeye.device_health import DeviceHealth
from cityeye.sensor_registry import SensorRegistry

__all__ = ["DeviceHealthTracker"]

#: longest last-reason text kept in a record
_MAX_REASON = 300


class _Counters:
    __slots__ = ("kind", "district", "last_seen", "last_reading_at", "messages", "readings", "dead_letters",
                 "rate_limited", "last_reason", "last_reason_at", "messages_then", "dead_letters_then")

    def __init__(self, kind: str, district: str) -> None:
        self.kind, self.district = kind, district
        self.last_seen = self.last_reading_at = self.last_reason = self.last_reason_at = None
        self.messages = self.readings = self.dead_letters = self.rate_limited = 0
        self.messages_then = self.dead_letters_then = 0


class DeviceHealthTracker:
    """Counts what each registered device sent and what became of it.

    Parameters
    ----------
    registry
        The sensors tracked (each gets a record, also before its first message).
    gateway
        The gateway's name in the records (its MQTT client id).
    started_at
        The start of the first rate interval.
    """

    def __init__(self, registry: SensorRegistry, gateway: str, started_at: float) -> None:
        self.gateway = gateway
        self._devices = {s.id: _Counters(s.kind, s.district) for s in registry}
        self._since = started_at

    def __contains__(self, sensor_id: object) -> bool:
        return sensor_id in self._devices

    def message(self, sensor_id: str | None, now: float) -> None:
        """One MQTT message arrived on ``sensor_id``'s topic."""
        device = self._devices.get(sensor_id)
        if device is not None:
            device.messages += 1
            device.last_seen = now

    def rate_limited(self, sensor_id: str | None) -> None:
        """The device's last message was refused by the rate limiter (its dead letter is counted too)."""
        device = self._devices.get(sensor_id)
        if device is not None:
            device.rate_limited += 1

    def outcome(self, outcome: Reading | DeadLetter) -> None:
        """A reading or dead letter the device's message gave (a batch gives several)."""
        device = self._devices.get(outcome.sensor_id)
        if device is None:
            return
        if isinstance(outcome, Reading):
            device.readings += 1
            device.last_reading_at = outcome.received_at
        else:
            device.dead_letters += 1
            device.last_reason = outcome.reason[:_MAX_REASON]
            device.last_reason_at = outcome.received_at

    def snapshot(self, now: float) -> list[DeviceHealth]:
        """Every tracked device's record; rates over the time since the previous snapshot."""
        span = max(now - self._since, 1e-9)
        self._since = now
        records = []
        for sensor_id, d in self._devices.items():
            records.append(DeviceHealth(
                sensor_id=sensor_id, kind=d.kind, district=d.district, last_seen=d.last_seen,
                last_reading_at=d.last_reading_at, messages=d.messages, readings=d.readings,
                dead_letters=d.dead_letters, rate_limited=d.rate_limited,
                message_rate_per_s=round((d.messages - d.messages_then) / span, 3),
                dead_letter_rate_per_s=round((d.dead_letters - d.dead_letters_then) / span, 3),
                last_reason=d.last_reason, last_reason_at=d.last_reason_at, updated_at=now, gateway=self.gateway))
            d.messages_then, d.dead_letters_then = d.messages, d.dead_letters
        return records
