"""Python objects in snapshots (the River models): pickled, zlib-compressed, base64 text.

:func:`pickled` and :func:`unpickled` are the one way a detector built on
River objects writes and reads them; snapshots written before the
compression (``"pickle"``: base64 of the plain pickle) still read.

>>> from detectors._pickled import pickled, unpickled
>>> state = pickled((1.5, [2, 3], None))
>>> sorted(state), unpickled(state)
(['pickle_z'], (1.5, [2, 3], None))
>>> import base64, pickle
>>> unpickled({"pickle": base64.b64encode(pickle.dumps("old")).decode()})
'old'
"""

from __future__ import annotations

import base64
import pickle
import zlib
from typing import Any

__all__ = ["pickled", "unpickled"]


def pickled(obj: Any) -> dict[str, str]:
    """``obj`` as JSON-able data: pickled, zlib-compressed (level 9), base64."""
    blob = zlib.compress(pickle.dumps(obj), 9)
    return {"pickle_z": base64.b64encode(blob).decode("ascii")}


def unpickled(state: dict[str, Any]) -> Any:
    """The object :func:`pickled` wrote (or a snapshot's uncompressed ``"pickle"`` from before)."""
    if "pickle_z" in state:
        return pickle.loads(zlib.decompress(base64.b64decode(state["pickle_z"])))
    return pickle.loads(base64.b64decode(state["pickle"]))
