"""What a device-format decoder hands to validation: canonical reading items per sensor.

A decoder (SenML, a vendor mapping; ``ingest/formats.py`` picks one by
topic) turns one parsed MQTT payload into :class:`DecodedItem` s: each is
the canonical reading item ``{"ts": <epoch ms>, "values": {...}}`` that
``ingest/validation.py`` already checks for the plain contract topics,
with the sensor it belongs to, or the reason it could not be built. A
payload refused as a whole raises :class:`FormatRefused`. Validation then
treats both exactly like a plain message: one path to readings and dead
letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cityeye.errors import ValidationError

__all__ = ["DecodedItem", "FormatRefused", "source_bytes"]


class FormatRefused(ValidationError):
    """A payload (or one item of it) a decoder refuses; ``code`` is a dead-letter reason code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class DecodedItem:
    """One canonical reading item of a decoded payload, or why it could not be made.

    Exactly one of ``item`` and ``error`` is set. ``where`` names the part
    of the payload it came from (``"record 2"``, ``"readings[1]"``) and
    ``source`` is that part's JSON, kept by its dead letter.
    """

    sensor_id: str | None
    item: dict[str, Any] | None
    where: str
    source: bytes
    error: FormatRefused | None = None
    #: the district the topic names (checked against the registry), if it names one
    district: str | None = None
    #: the kind the format is for (checked against the registry), if it is for one
    kind: str | None = None


def source_bytes(part: Any) -> bytes:
    """The JSON of one part of a payload for its dead letter (ASCII escapes: a lone surrogate cannot break it)."""
    return json.dumps(part, separators=(",", ":"), default=str).encode("ascii")
