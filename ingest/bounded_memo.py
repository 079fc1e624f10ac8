"""One memo for what the gateway computes per message from a string a device chose.

Topics and field names come from devices: a city's own devices use a bounded
set, but a hostile one may publish on endless distinct topics tens of
kilobytes long (an MQTT topic may be 64 KiB) or send such field names.
``functools.lru_cache`` bounds the number of entries, not their size; a
:class:`BoundedMemo` bounds both, so what hostile strings cost in memory is
at most ``size * max_len`` characters of keys (and one result each).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BoundedMemo"]

class BoundedMemo(dict):
    """``func(key)`` remembered per string key; read it as ``memo[key]``.

    A dict whose missing keys are computed (``__missing__``): a key seen before
    costs one dict lookup in C, about half a ``functools.lru_cache`` hit.

    Parameters
    ----------
    func
        The function of one string to remember; it should be pure.
    size
        How many keys the memo holds at most: it forgets all of them when it is full.
    max_len
        Keys longer than this are never kept (``func`` runs for each reading of one).
    """

    __slots__ = ("_func", "_size", "_max_len")

    def __init__(self, func: Callable[[str], Any], size: int = 65536, max_len: int = 256) -> None:
        if size < 1 or max_len < 0:
            raise ValueError(f"a memo needs size >= 1 and max_len >= 0, not {size} and {max_len}")
        super().__init__()
        self._func, self._size, self._max_len = func, size, max_len

    def __missing__(self, key: str) -> Any:
        found = self._func(key)
        if len(key) <= self._max_len:
            if len(self) >= self._size:
                self.clear()
            self[key] = found
        return found
