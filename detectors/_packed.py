"""Numeric arrays in snapshots as compact text: byte-shuffled, deflate-compressed, base-91-encoded bytes.

A detector's state goes into JSON (``snapshot()``); a list of floats written
as JSON text costs about 20 bytes a number, the same numbers as ``float32``
bytes 4 (and about 4.9 once base-91-encoded). :func:`pack` and :func:`unpack` are
the one way anomaly models write their arrays.

The bytes of a multi-byte array are *shuffled* before compression (every
element's first byte, then every element's second byte, ...): the sign and
exponent bytes of a float array vary little and compress well once they
stand together, which zlib cannot see when they are interleaved with the
mantissas. One-byte arrays are not shuffled (nothing to shuffle), and a
dtype's name comes from a dict (``dtype.name`` is a slow property).

A packed array is one JSON string, ``"<dtype>:<shape>/<text>"`` (shape
``"3,32"``; ``""`` for a 0-d array), ``<text>`` a raw deflate stream (no zlib
header or checksum, 6 bytes less an array) compressed with the ``Z_FILTERED``
strategy at level 6 (fewer short matches, which cost more than they save on
shuffled floats, bitmaps and int8 windows: ~1.2 % less than level 1's default
strategy, as fast), written in base 91 (:func:`b91encode`: every 13 bits as two
of the 91 printable ASCII characters other than ``"``, ``\\`` and ``'``, 1.23
characters a byte against base85's 1.25). All three since session 11's second
change (2026-12-05); ``"<dtype>:<shape>:<text>"`` (base85 of a zlib stream,
level 1) from its first change; before it a ``{"dtype", "shape", "z85"}``
object, whose keys cost about 40 bytes an array. Arrays packed in each of
those forms (and ``"b64"``: base64 of the unshuffled compressed bytes;
``"z85"`` at level 6) still unpack.

>>> import numpy as np
>>> from detectors._packed import pack, unpack
>>> a = np.arange(5, dtype=np.float32).reshape(1, 5)
>>> blob = pack(a)
>>> blob.split("/")[0]
'float32:1,5'
>>> bool((unpack(blob) == a).all()) and unpack(blob).dtype == np.float32 and unpack(blob).shape == (1, 5)
True
"""

from __future__ import annotations

import base64
import re
import zlib
from typing import Any

import numpy as np

from cityeye.errors import CityEyeError

__all__ = ["pack", "unpack", "b85decode", "b91encode", "b91decode", "SnapshotFormatError"]

_DTYPES = {"float64", "float32", "float16", "int8", "uint8", "int32", "int64", "uint32", "uint64"}
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


#: the base-91 alphabet: printable ASCII but ``"``, ``\\`` (escaped in JSON) and ``'``
_B91_ALPHABET = np.frombuffer(bytes(c for c in range(0x21, 0x7F) if chr(c) not in "\"\\'"), dtype=np.uint8)
_B91_DIGITS = np.full(256, 255, dtype=np.uint8)
_B91_DIGITS[_B91_ALPHABET] = np.arange(91, dtype=np.uint8)
#: 13-bit group -> its two characters (``divmod(group, 91)``), as one native ``uint16`` a group
_B91_PAIRS = _B91_ALPHABET[np.stack(np.divmod(np.arange(8192), 91), axis=1)].view(np.uint16).reshape(-1)
#: the same two characters as ``bytes``, for the pure-Python path of short inputs
_B91_PAIR_BYTES = [pair.tobytes() for pair in _B91_PAIRS]
#: a 13-byte block's groups: groups 0-3 from its big-endian bytes 0-7, groups 4-7 from its bytes 5-12
_B91_SHIFTS = np.array([[51, 38, 25, 12], [39, 26, 13, 0]], dtype=np.uint64)
#: below this many bytes an integer and a loop encode faster than numpy (crossover measured ~96 bytes, 2026-12-05)
_B91_SHORT = 96


def b91encode(data: bytes) -> bytes:
    """``data``'s bits (zero-padded to a multiple of 13) in groups of 13, each as two base-91 digits.

    >>> import os
    >>> all(b91decode(b91encode(b))[: len(b)] == b for b in (b"", b"a", bytes(7), os.urandom(1001)))
    True
    >>> len(b91encode(bytes(13)))  # 104 bits, 8 groups
    16
    """
    blocks = -(-len(data) // 13)
    padded = bytes(data) + bytes(blocks * 13 - len(data))
    count = -(-len(data) * 8 // 13)  # groups that hold a bit of data
    if len(data) < _B91_SHORT:
        number, top = int.from_bytes(padded, "big"), blocks * 104 - 13
        return b"".join([_B91_PAIR_BYTES[(number >> shift) & 8191] for shift in range(top, top - 13 * count, -13)])
    # every block's bytes 0-7 and 5-12 as two big-endian words (unaligned strided views of ``padded``)
    words = np.ndarray((blocks, 2, 1), dtype=">u8", buffer=padded, strides=(13, 5, 0))
    groups = ((words >> _B91_SHIFTS) & np.uint64(8191)).reshape(-1)
    return _B91_PAIRS[groups[:count]].tobytes()


def b91decode(text: str | bytes) -> bytes:
    """The bytes of :func:`b91encode` (with the padding's bits as a last zero byte when they fill one);
    a ``ValueError`` for an odd length, a character outside the alphabet or a group beyond 13 bits."""
    if isinstance(text, str):
        text = text.encode("ascii")
    digits = _B91_DIGITS[np.frombuffer(text, dtype=np.uint8)].astype(np.uint16)
    if len(digits) % 2 or (digits == 255).any():
        raise ValueError("bad base91 text")
    groups = digits[0::2] * 91 + digits[1::2]
    if (groups >= 8192).any():
        raise ValueError("base91 group beyond 13 bits")
    bits = ((groups[:, None] >> np.arange(12, -1, -1, dtype=np.uint16)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bits[: len(bits) // 8 * 8]).tobytes()


def pack(array: Any) -> str:
    """``"<dtype>:<shape>/<base91>"`` of ``array`` (little-endian bytes, shuffled, raw deflate, base 91)."""
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
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_FILTERED)
    return f"{name}:{shape}/{b91encode(deflate.compress(shuffled) + deflate.flush()).decode('ascii')}"


_PACKED = re.compile(r"(\w+):([\d,]*)([:/])(.*)", re.DOTALL)


def _fields(blob: str | dict[str, Any]) -> dict[str, Any]:
    """``{"dtype", "shape", "d91" | "z85"}`` of a packed string (``/``: base-91 raw deflate, ``:``:
    base-85 zlib); a packed object as it is."""
    if not isinstance(blob, str):
        return blob
    match = _PACKED.fullmatch(blob)
    if match is None:
        raise ValueError("not a packed array")
    dtype, shape, sep, text = match.groups()
    return {"dtype": dtype, "shape": [int(n) for n in shape.split(",")] if shape else [],
            "d91" if sep == "/" else "z85": text}


def unpack(blob: str | dict[str, Any]) -> np.ndarray:
    """The array of :func:`pack`, or of an older packed object (a fresh, writable copy)."""
    try:
        blob = _fields(blob)
        dtype = blob["dtype"]
        if dtype not in _DTYPES:
            raise SnapshotFormatError(f"unknown dtype {dtype!r}")
        size = np.dtype(dtype).itemsize
        if "d91" in blob or "z85" in blob:
            # (base 91's padding may end in a zero byte: it follows the end of the deflate stream)
            data = zlib.decompress(b91decode(blob["d91"]), -15) if "d91" in blob else \
                zlib.decompress(b85decode(blob["z85"]))
            shuffled = np.frombuffer(data, dtype=np.uint8)
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

