"""Compact input series for rule tests, in ``promtool test rules`` notation.

A series is space-separated segments, expanded left to right:

=============  ==========================================  ======================
segment        values                                      example → values
=============  ==========================================  ======================
``a``          one value                                   ``4.5`` → 4.5
``axn``        ``a`` then ``n`` more copies                ``1x3`` → 1 1 1 1
``a+bxn``      ``a`` then ``n`` steps of ``+b``            ``1+0.5x2`` → 1 1.5 2
``a-bxn``      ``a`` then ``n`` steps of ``-b``            ``3-1x2`` → 3 2 1
``_``          no reading at this step                     ``_`` → (missing)
``_xn``        ``n + 1`` missing steps                     ``_x2`` → 3 missing
=============  ==========================================  ======================

Missing steps are ``None``. As in promtool, ``axn`` yields ``n + 1`` values.
"""

from __future__ import annotations

import re

__all__ = ["expand_series", "SeriesError"]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SEGMENT = re.compile(rf"^(?:(?P<miss>_)(?:x(?P<mn>\d+))?|(?P<a>{_NUM})(?:(?P<op>[-+])(?P<b>\d+(?:\.\d*)?|\.\d+))?"
                      rf"(?:x(?P<n>\d+))?)$")
#: a series longer than this is refused (a typo like ``1x1000000000`` must not eat the memory)
MAX_STEPS = 1_000_000


class SeriesError(ValueError):
    """A series that is not in the notation (the message names the segment)."""


def expand_series(text: str | float | int) -> list[float | None]:
    """The values of a series in the notation above.

    >>> expand_series("4.0x1 4.0+0.25x2 _ 5")
    [4.0, 4.0, 4.0, 4.25, 4.5, None, 5.0]
    >>> expand_series("3-1x2 _x1")
    [3.0, 2.0, 1.0, None, None]
    """
    if isinstance(text, bool):
        raise SeriesError(f"{text!r} is not a series")
    if isinstance(text, (int, float)):
        return [float(text)]
    out: list[float | None] = []
    for seg in str(text).split():
        m = _SEGMENT.match(seg)
        if m is None:
            raise SeriesError(f"{seg!r} is not a series segment (a, axn, a+bxn, a-bxn, _, _xn)")
        if m.group("miss"):
            count = int(m.group("mn") or 0) + 1
            values: list[float | None] = [None] * min(count, MAX_STEPS + 1)
        else:
            a, n = float(m.group("a")), int(m.group("n") or 0)
            step = float(m.group("b") or 0.0) * (-1.0 if m.group("op") == "-" else 1.0)
            if n > MAX_STEPS:
                raise SeriesError(f"{seg!r} has more than {MAX_STEPS} steps")
            values = [round(a + i * step, 9) for i in range(n + 1)]
        out.extend(values)
        if len(out) > MAX_STEPS:
            raise SeriesError(f"the series has more than {MAX_STEPS} steps")
    if not out:
        raise SeriesError("an empty series")
    return out
