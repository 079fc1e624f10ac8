"""InfluxDB line protocol: a :class:`Point` and its exact escaping.

One line is ``measurement[,tag=value...] field=value[,field=value...] ts``.
The rules implemented here are those of InfluxDB's Go parser (1.x and 2.x;
3.x accepts the same lines), checked against a real ``influxd`` in ``tests/test_influx_sink.py``:

* measurement: ``,`` and space are escaped with a backslash;
* tag keys, tag values and field keys: ``,``, ``=`` and space are escaped;
* string field values are double-quoted with ``"`` and ``\\`` escaped;
  newlines are allowed inside the quotes;
* control characters (newline, tab, ...) cannot appear in a measurement, a
  key or a tag value: each becomes a space (then escaped);
* a backslash in a name or tag value is kept as it is (the parser does not
  unescape ``\\\\``); as the parser takes any special character after a
  backslash as escaped, a value cannot end in one: trailing backslashes
  become U+29F5 (⧵), which keeps distinct values distinct;
* empty tag values are not allowed: such tags are left out;
* float fields must be finite: NaN and infinities are left out (InfluxDB
  refuses them); integers get the ``i`` suffix, booleans are ``true``/``false``.

Lone surrogates (which cannot be encoded as UTF-8) become U+FFFD. A point
with no field left is refused with :class:`ValueError`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Mapping, Union

from alerts.notifiers.common import scrub_text

__all__ = [
    "TRAILING_BACKSLASH",
    "FieldValue",
    "Point",
    "escape_measurement",
    "escape_key",
    "escape_string_field",
    "format_field_value",
]

FieldValue = Union[float, int, bool, str]

#: what a trailing backslash of a name or tag value becomes (REVERSE SOLIDUS OPERATOR)
TRAILING_BACKSLASH = "\u29f5"
_NAME_SPECIALS = ", "
_KEY_SPECIALS = ",= "


def _escape(text: str, specials: str) -> str:
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    # the parser takes any special character after a backslash as escaped, so
    # a value cannot end in a backslash: trailing ones become U+29F5
    stripped = text.rstrip("\\")
    text = stripped + TRAILING_BACKSLASH * (len(text) - len(stripped))
    return re.sub(rf"([{re.escape(specials)}])", r"\\\1", text)


def escape_measurement(name: str) -> str:
    """A measurement name as line protocol (commas and spaces escaped)."""
    return _escape(name, _NAME_SPECIALS)


def escape_key(text: str) -> str:
    """A tag key, tag value or field key as line protocol."""
    return _escape(text, _KEY_SPECIALS)


def escape_string_field(text: str) -> str:
    """A string field value, quoted, with ``"`` and ``\\`` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_field_value(value: FieldValue) -> str | None:
    """Line protocol for one field value; ``None`` for a non-finite float."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return escape_string_field(value)
    raise TypeError(f"field value of type {type(value).__name__} is not float, int, bool or str")


@dataclass
class Point:
    """One InfluxDB point: measurement, tags, fields and a timestamp in ns.

    ``fields`` with ``None`` values are left out, so callers can pass
    optional quantities straight through.
    """

    measurement: str
    tags: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, FieldValue | None] = field(default_factory=dict)
    time_ns: int | None = None

    def to_line(self) -> str:
        """The point as one line of line protocol (no trailing newline)."""
        if not self.measurement:
            raise ValueError("a point needs a measurement name")
        head = escape_measurement(self.measurement)
        tags = sorted((str(k), str(v)) for k, v in self.tags.items() if k and v is not None and str(v) != "")
        for key, value in tags:
            head += f",{escape_key(key)}={escape_key(value)}"
        parts = []
        for key, value in self.fields.items():
            if value is None or not key:
                continue
            text = format_field_value(value)
            if text is not None:
                parts.append(f"{escape_key(str(key))}={text}")
        if not parts:
            raise ValueError(f"point of measurement {self.measurement[:60]!r} has no valid field")
        line = scrub_text(f"{head} {','.join(parts)}")
        if self.time_ns is not None:
            line += f" {int(self.time_ns)}"
        return line
