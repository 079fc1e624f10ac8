"""Message (de)serialisation for the stream processor.

Choice: the topics carry **raw bytes** (Faust ``value_serializer="raw"``) and
this module decodes them with the shared contracts dataclasses
(:class:`cityeye.contracts.Reading`, :class:`~cityeye.contracts.AlertEvent`)
instead of typed ``faust.Record`` s. Reasons:

* speed: one ``json.loads`` and a plain dataclass per reading; a
  ``faust.Record`` adds model construction, field coercion and the
  ``__faust`` namespace lookup per message: work the hot path does not
  need;
* one definition: the gateway, the sinks and the worker share
  ``contracts.py``, so the payload shape cannot drift between two mirrors;
* hostile input: a payload that is not a valid reading must become a dead
  letter, never an exception inside Faust's deserialiser (which would crash
  or silently skip in the consumer, out of our hands).
"""

from __future__ import annotations

import json
import math
import time

from cityeye.contracts import DeadLetter, Reading, to_json
from cityeye.errors import ValidationError

__all__ = ["decode_reading", "dead_letter", "MAX_REASON_PAYLOAD_CHARS"]

#: dead letters keep at most this many characters of the text payload (the exact bytes are in payload_b64)
MAX_REASON_PAYLOAD_CHARS = 4096


def decode_reading(raw: bytes | None, key: bytes | None = None) -> Reading:
    """A :class:`Reading` from a ``readings.<kind>`` message value.

    Raises :class:`~cityeye.errors.ValidationError` with the reason for
    anything that is not a reading: not JSON, missing fields, non-finite
    numbers, a key that is not the sensor id.
    """
    if raw is None:
        raise ValidationError("empty message value (tombstone) on a readings topic")
    try:
        reading = Reading.from_json(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"not a JSON reading: {exc}") from None
    except KeyError as exc:
        raise ValidationError(f"reading lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValidationError(f"malformed reading: {exc}") from None
    if not reading.sensor_id:
        raise ValidationError("reading has an empty sensor_id")
    if not math.isfinite(reading.ts):
        raise ValidationError("reading ts is not finite")
    bad = [k for k, v in reading.values.items() if not math.isfinite(v)]
    if bad:
        raise ValidationError(f"reading values not finite: {', '.join(sorted(bad))}")
    if key is not None and key != reading.sensor_id.encode():
        raise ValidationError(f"message key {key[:64]!r} is not the reading's sensor id {reading.sensor_id!r}")
    return reading


def dead_letter(raw: bytes | None, reason: str, source_topic: str, sensor_id: str | None = None) -> bytes:
    """JSON of a :class:`DeadLetter` (built by :meth:`DeadLetter.of`) for a message the worker refused.

    ``mqtt_topic`` is taken from the payload when it has one, else it names
    the Kafka topic the message came from (``kafka:<topic>``); the reason
    is prefixed ``stream worker:``; the readable payload is cut at
    :data:`MAX_REASON_PAYLOAD_CHARS`.
    """
    raw = raw or b""
    mqtt_topic = f"kafka:{source_topic}"
    try:
        obj = json.loads(raw)
        if isinstance(obj, dict):
            mqtt_topic = str(obj.get("mqtt_topic") or mqtt_topic)[:256]
            sensor_id = sensor_id or (str(obj["sensor_id"])[:64] if obj.get("sensor_id") else None)
    except (ValueError, UnicodeDecodeError):
        pass
    return to_json(DeadLetter.of(raw, mqtt_topic, f"stream worker: {reason}", time.time(), sensor_id,
                                 max_text_chars=MAX_REASON_PAYLOAD_CHARS))
