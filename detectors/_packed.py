"""Numeric arrays in snapshots as compact text: zlib-compressed, base64-encoded bytes.

A detector's state goes into JSON (``snapshot()``); a list of floats written
as JSON text costs about 20 bytes a number, the same numbers as ``float32``
bytes 4 (and 5.4 once base64-encoded). :func:`pack` and :func:`unpack` are
the one way anomaly models write their arrays.

>>> import numpy as np
>>> from detectors._packed import pack, unpack
>>> a = np.arange(5, dtype=np.float32)
>>> blob = pack(a)
>>> sorted(blob)
['b64', 'dtype', 'shape']
>>> bool((unpack(blob) == a).all()) and unpack(blob).dtype == np.float32
True
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

from cityeye.errors import CityEyeError

__all__ = ["pack", "unpack", "SnapshotFormatError"]

_DTYPES = {"float64", "float32", "float16", "int8", "uint8", "int32", "int64", "uint32"}


class SnapshotFormatError(CityEyeError, ValueError):
    """A packed array in a snapshot is not readable (bad base64, dtype or shape)."""


def pack(array: Any) -> dict[str, Any]:
    """``{"dtype", "shape", "b64"}`` of ``array`` (little-endian bytes, zlib level 6)."""
    a = np.ascontiguousarray(array)
    if a.dtype.name not in _DTYPES:
        raise SnapshotFormatError(f"cannot pack dtype {a.dtype.name}")
    raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    return {"dtype": a.dtype.name, "shape": list(a.shape), "b64": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


def unpack(blob: dict[str, Any]) -> np.ndarray:
    """The array of :func:`pack` (a fresh, writable copy)."""
    try:
        dtype = blob["dtype"]
        if dtype not in _DTYPES:
            raise SnapshotFormatError(f"unknown dtype {dtype!r}")
        raw = zlib.decompress(base64.b64decode(blob["b64"], validate=True))
        a = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        return a.reshape([int(n) for n in blob["shape"]])
    except SnapshotFormatError:
        raise
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise SnapshotFormatError(f"unreadable packed array: {exc}") from None

