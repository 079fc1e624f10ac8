"""Intake progress: how far a gateway's intake is known complete, told to the workers in the readings partitions.

A gateway's readings can be late through no fault of their sensors: the
gateway CPU-starved, paused, or its MQTT session holding a backlog at the
broker. A worker that counts the wall clock while nothing arrives would then
call every sensor behind that gateway silent (docs/streams.md, "Stale sensors").

So each gateway sends, after a batch of its records is in Kafka, one
*intake progress* record to every partition of the readings topics it
writes: "everything this gateway received over MQTT before ``until`` (its
wall clock, seconds) is in Kafka ahead of this record". ``until`` is the send
time of a probe the gateway published to its own MQTT topic
(:func:`probe_topic`) and read back through its intake: the broker delivers a
session's messages in order, so every device message queued for the gateway
before the probe was received (and produced) ahead of it. A worker reading
the record at its offset has therefore processed those readings too, and
ages the partition's sensors no further than ``until`` (streams/clocks.py).

Record shape (docs/contracts.md): header ``cityeye-intake: 1``, no key, value
``{"gateway": <MQTT client id>, "until": <unix seconds>}``. Readers of the
readings topics that only want readings skip it
(:func:`cityeye.reading_records.readings_of` yields nothing for it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["INTAKE_HEADER", "INTAKE_VERSION", "PROBE_NAMESPACE", "IntakeProgress", "header_value",
           "is_intake_progress", "probe_topic"]

#: the header that marks an intake progress record, and the one version this code writes and reads
INTAKE_HEADER = "cityeye-intake"
INTAKE_VERSION = b"1"

#: the MQTT topic namespace of the gateways' probes (outside the devices' ``cityeye/...``)
PROBE_NAMESPACE = "cityeye-intake"


def probe_topic(client_id: str) -> str:
    """The MQTT topic a gateway with this client id sends its probes to and reads them back from."""
    safe = "".join("_" if c in "/+#\0" else c for c in client_id) or "_"
    return f"{PROBE_NAMESPACE}/{safe}/probe"


def header_value(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None, name: str) -> Any:
    """The value of a record's first header called ``name`` (headers as aiokafka's pairs or a
    mapping), or ``None`` when it has none."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return next((value for key, value in items if key == name), None)


def is_intake_progress(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bool:
    """Whether a readings record with these headers is an intake progress record."""
    return header_value(headers, INTAKE_HEADER) is not None


@dataclass(frozen=True)
class IntakeProgress:
    """Gateway ``gateway`` had everything it received before ``until`` (unix seconds) in Kafka."""

    gateway: str
    until: float

    #: the headers of its record, as aiokafka's ``send(headers=...)`` takes them
    HEADERS = ((INTAKE_HEADER, INTAKE_VERSION),)

    def to_json(self) -> bytes:
        return orjson.dumps({"gateway": self.gateway, "until": self.until})

    @classmethod
    def from_record(cls, value: bytes | None, headers: Any) -> "IntakeProgress | None":
        """The progress a record carries; None for anything malformed or of another version (never raises)."""
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        if not any(name == INTAKE_HEADER and value_ == INTAKE_VERSION for name, value_ in items):
            return None
        try:
            obj = orjson.loads(value or b"")
            gateway, until = obj["gateway"], obj["until"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            return None
        if not isinstance(gateway, str) or isinstance(until, bool) or not isinstance(until, (int, float)):
            return None
        if not math.isfinite(until):
            return None
        return cls(gateway[:256], float(until))
