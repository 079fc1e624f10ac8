"""Which of a receiver's due notifications may be sent now (alerts/runtime/delivery.py).

A receiver's delivery worker keeps up to ``delivery.concurrency``
notifications in flight at once, yet a receiver must see the notifications
about one group, and about one alert, in the order they were queued (a
``resolved`` never overtakes the ``firing`` it ends). :class:`DeliveryOrder`
keeps that promise:

* a notification is *ordered after* every earlier one (outbox order) that
  shares its group key or one of its alerts' ids: its :func:`order_keys`;
* it may go only when no such earlier notification is in flight, nor
  waiting ahead of it among the due ones, and fewer than ``concurrency``
  are in flight;
* it stays *in flight* from the moment it is admitted until its outcome is
  committed (:meth:`DeliveryOrder.settle`), so at most ``concurrency`` sends
  can be repeated after a ``kill -9``.

A notification waiting for its retry (not due) does not hold back later
ones, as before concurrent delivery: a receiver that refuses one message
keeps getting the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from alerts.runtime.store import OutboxRow

__all__ = ["DeliveryOrder", "order_keys"]


def order_keys(body: dict) -> frozenset[str]:
    """What a notification is ordered by: its group key and each of its alerts' ids."""
    keys = {f"group:{body.get('group_key', '')}"}
    keys.update(f"alert:{a.get('alert_id', '')}" for a in body.get("alerts", ()))
    return frozenset(keys)


@dataclass
class DeliveryOrder:
    """The in-flight notifications of one receiver and the admission rule (see the module docstring).

    Parameters
    ----------
    concurrency
        Most notifications in flight at once (``delivery.concurrency``).
    """

    concurrency: int
    #: notification id -> its order keys, for each notification admitted and not yet settled
    _in_flight: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")

    @property
    def in_flight(self) -> int:
        """How many notifications are admitted and not yet settled."""
        return len(self._in_flight)

    @property
    def free(self) -> int:
        """How many more may be admitted now."""
        return max(0, self.concurrency - len(self._in_flight))

    def admit(self, due: Iterable[OutboxRow]) -> list[tuple[OutboxRow, dict]]:
        """Admit what may go now from ``due`` (in outbox order); returns each admitted row with its body.

        Rows already in flight are passed over; a row sharing an order key
        with one in flight, or with an earlier row of ``due`` that is not
        admitted, waits (its keys then hold back the rows after it too).
        """
        taken = set().union(*self._in_flight.values()) if self._in_flight else set()
        admitted: list[tuple[OutboxRow, dict]] = []
        for row in due:
            if self.free == 0:
                break
            if row.id in self._in_flight:
                continue
            body = json.loads(row.body)
            keys = order_keys(body)
            if taken.isdisjoint(keys):
                self._in_flight[row.id] = keys
                admitted.append((row, body))
            taken |= keys
        return admitted

    def settle(self, nid: str) -> None:
        """``nid``'s outcome is committed (or its send abandoned): later notifications of its keys may go."""
        self._in_flight.pop(nid, None)
