"""Numeric arrays in snapshots as compact text: byte-shuffled, zlib-compressed, base85-encoded bytes.

A detector's state goes into JSON (``snapshot()``); a list of floats written
as JSON text costs about 20 bytes a number, the same numbers as ``float32``
bytes 4 (and 5 once base85-encoded). :func:`pack` and :func:`unpack` are
the one way anomaly models write their arrays.

The bytes of a multi-byte array are *shuffled* before compression (every
element's first byte, then every element's second byte, ...): the sign and
exponent bytes of a float array vary little and compress well once they
stand together, which zlib cannot see when they are interleaved with the
mantissas. Base85 (Python's RFC 1924 alphabet: no quote, no backslash, so
nothing to escape in JSON) takes 5 characters per 4 bytes against base64's
5.33; it is computed with numpy above ~200 bytes (the same text as
:func:`base64.b85encode`, whose pure-Python loop costs more than the
compression there) and by the standard library below (where numpy's per-call
overhead costs more; one-byte arrays are not shuffled), and zlib runs at
level 1 (the shuffled bytes compress about as well as at level 6, in a
fraction of the time).

A packed array is one JSON string, ``"<dtype>:<shape>:<text>"`` (shape
``"3,32"``; ``""`` for a 0-d array): since session 11 (2026-12-05), before a
``{"dtype", "shape", "z85"}`` object, whose keys cost about 40 bytes an
array, 0.8 KB of the default detector's ~15 KB. Arrays packed before (such
objects; ``"b64"``: base64 of the unshuffled compressed bytes; ``"z85"`` at
level 6) still unpack.

>>> import numpy as np
>>> from detectors._packed import pack, unpack
>>> a = np.arange(5, dtype=np.float32).reshape(1, 5)
>>> blob = pack(a)
>>> blob.split(":")[:2]
['float32', '1,5']
>>> bool((unpack(blob) == a).all()) and unpack(blob).dtype == np.float32 and unpack(blob).shape == (1, 5)
True
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

from cityeye.errors import CityEyeError

__all__ = ["pack", "unpack", "b85encode", "b85decode", "SnapshotFormatError"]

_DTYPES = {"float64", "float32", "float16", "int8", "uint8", "int32", "int64", "uint32"}
#: native dtype -> its name, for the dtypes packed
_NAME_OF = {np.dtype(name): name for name in _DTYPES}


class SnapshotFormatError(CityEyeError, ValueError):
    """A packed array in a snapshot is not readable (bad base64, dtype or shape)."""


#: the RFC 1924 alphabet of base64.b85encode, as byte values
_B85_ALPHABET = np.frombuffer(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~", dtype=np.uint8)
#: byte value -> digit (255: not in the alphabet)
_B85_DIGITS = np.full(256, 255, dtype=np.uint8)
_B85_DIGITS[_B85_ALPHABET] = np.arange(85, dtype=np.uint8)
#: 85**4 .. 85**0, a 5-character group's digit weights
_B85_WEIGHTS = np.array([85**4, 85**3, 85**2, 85, 1], dtype=np.uint64)
#: bytes from which :func:`b85encode` runs in numpy (below: 4-10 against 12-14 µs a call, measured 2026-12-05)
_NUMPY_B85_FROM = 192


def b85encode(data: bytes) -> bytes:
    """:func:`base64.b85encode` of ``data`` (no padding): the standard library's own below
    :data:`_NUMPY_B85_FROM` bytes (its pure-Python loop costs less than numpy's per-call
    overhead there), vectorised above.

    >>> import base64, os
    >>> all(b85encode(b) == base64.b85encode(b) for b in (b"", b"a", b"\\0" * 7, os.urandom(191), os.urandom(1001)))
    True
    """
    if len(data) < _NUMPY_B85_FROM:
        return base64.b85encode(data)
    padding = -len(data) % 4
    words = np.frombuffer(data + bytes(padding), dtype=">u4").astype(np.uint32)
    digits = np.empty((5, len(words)), dtype=np.uint32)  # a group's digits, most significant first
    for i in range(4, 0, -1):
        words, digits[i] = np.divmod(words, 85)
    digits[0] = words
    text = _B85_ALPHABET[digits.T].tobytes()
    return text[: len(text) - padding]


def b85decode(text: str | bytes) -> bytes:
    """:func:`base64.b85decode`, vectorised; a ``ValueError`` for a character outside the
    alphabet or a group beyond 32 bits.

    >>> import base64, os
    >>> all(b85decode(base64.b85encode(b)) == b for b in (b"", b"a", os.urandom(1001)))
    True
    """
    if isinstance(text, str):
        text = text.encode("ascii")
    padding = -len(text) % 5
    digits = _B85_DIGITS[np.frombuffer(text + b"~" * padding, dtype=np.uint8)]
    if (digits == 255).any():
        raise ValueError("bad base85 character")
    words = digits.reshape(-1, 5).astype(np.uint64) @ _B85_WEIGHTS
    if (words > 0xFFFFFFFF).any():
        raise ValueError("base85 overflow")
    data = words.astype(">u4").tobytes()
    return data[: len(data) - padding]


def pack(array: Any) -> str:
    """``"<dtype>:<shape>:<base85>"`` of ``array`` (little-endian bytes, shuffled, zlib level 1, base85)."""
    a = np.ascontiguousarray(array)
    name = _NAME_OF.get(a.dtype) or a.dtype.name  # (the dict: dtype.name is a slow property)
    if name not in _DTYPES:
        raise SnapshotFormatError(f"cannot pack dtype {name}")
    size = a.dtype.itemsize
    if size == 1:  # one byte an element: no byte order, nothing to shuffle
        shuffled = a.tobytes()
    else:
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8)
        shuffled = raw.reshape(-1, size).T.tobytes()
    shape = ",".join(map(str, a.shape))
    return f"{name}:{shape}:{b85encode(zlib.compress(shuffled, 1)).decode('ascii')}"


def _fields(blob: str | dict[str, Any]) -> dict[str, Any]:
    """``{"dtype", "shape", "z85"}`` of a packed string (a packed object, written before session 11, as it is)."""
    if not isinstance(blob, str):
        return blob
    dtype, shape, text = blob.split(":", 2)
    return {"dtype": dtype, "shape": [int(n) for n in shape.split(",")] if shape else [], "z85": text}


def unpack(blob: str | dict[str, Any]) -> np.ndarray:
    """The array of :func:`pack`, or of an older packed object (a fresh, writable copy)."""
    try:
        blob = _fields(blob)
        dtype = blob["dtype"]
        if dtype not in _DTYPES:
            raise SnapshotFormatError(f"unknown dtype {dtype!r}")
        size = np.dtype(dtype).itemsize
        if "z85" in blob:
            shuffled = np.frombuffer(zlib.decompress(b85decode(blob["z85"])), dtype=np.uint8)
            if len(shuffled) % size:
                raise SnapshotFormatError(f"{len(shuffled)} bytes are not a whole number of {dtype}")
            raw = shuffled.reshape(size, -1).T.tobytes()
        else:  # packed before the byte shuffle
            raw = zlib.decompress(base64.b64decode(blob["b64"], validate=True))
        a = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        return a.reshape([int(n) for n in blob["shape"]])
    except SnapshotFormatError:
        raise
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise SnapshotFormatError(f"unreadable packed array: {exc}") from None

