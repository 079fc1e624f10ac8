"""Muting: one interface for what keeps a recorded alert out of notifications.

As Alertmanager's ``Muter`` (``Mutes(labels) bool``, implemented by its
silencer and its inhibitor): a :class:`Muter` answers, for one alert at
``now``, the reasons it is muted — silence ids and ``window:<name>``
(:class:`~alerts.pipeline.silence.Silencer`), ids of inhibiting alerts
(:class:`~alerts.pipeline.inhibit.Inhibitor`); an empty list means not
muted. A muted alert is still recorded, in the store and the history.

:func:`remute` asks the muters in order and keeps each answer on the alert
in the muter's :attr:`~Muter.field` (``silenced_by``, ``inhibited_by``);
a changed answer goes on the alert's timeline as the muter's
:attr:`~Muter.muted` or :attr:`~Muter.unmuted` action (``silenced`` /
``unsilenced``, ``inhibited`` / ``uninhibited``) with the reasons as
detail. A resolved alert keeps the mutes it ended with (its record shows
why it was not notified).
"""

from __future__ import annotations

from typing import Protocol

from alerts.model import Alert

__all__ = ["Muter", "remute"]


class Muter(Protocol):
    """Something that can mute alerts (a silencer, an inhibitor)."""

    #: the :class:`~alerts.model.Alert` attribute that keeps this muter's reasons
    field: str
    #: timeline and history action when the alert becomes muted / no longer muted
    muted: str
    unmuted: str

    def mutes(self, alert: Alert, now: float) -> list[str]:
        """Why ``alert`` is muted at ``now`` (empty: it is not)."""
        ...

    def mutes_others(self, alert: Alert) -> bool:
        """Whether a change of ``alert`` may change what this muter says about other alerts."""
        ...


def remute(alert: Alert, muters: tuple[Muter, ...], now: float) -> list[tuple[str, str]]:
    """Ask every muter about ``alert``; returns ``(action, detail)`` of each changed answer, in muter order.

    The changed answers are stored on the alert and on its timeline.
    """
    if not alert.active:
        return []
    changes = []
    for muter in muters:
        reasons = muter.mutes(alert, now)
        if reasons != getattr(alert, muter.field):
            setattr(alert, muter.field, reasons)
            action, detail = muter.muted if reasons else muter.unmuted, ", ".join(reasons)
            alert.record(now, action, detail=detail)
            changes.append((action, detail))
    return changes
