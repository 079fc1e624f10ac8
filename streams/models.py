"""Message (de)serialisation for the stream processor.

Choice: the topics carry **raw bytes** (Faust ``value_serializer="raw"``) and
this module decodes them with the shared contracts dataclasses
(:class:`cityeye.contracts.Reading`, :class:`~cityeye.contracts.AlertEvent`)
instead of typed ``faust.Record`` s. Reasons:

* speed: one JSON decode per record (:func:`cityeye.reading_records.readings_of`,
  the one decoder of single and aggregated records) and a plain dataclass per reading; a
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
import time

from cityeye.contracts import DeadLetter, to_json

__all__ = ["dead_letter", "MAX_REASON_PAYLOAD_CHARS"]

#: dead letters keep at most this many characters of the text payload (the exact bytes are in payload_b64)
MAX_REASON_PAYLOAD_CHARS = 4096


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
