"""One sensor's detector state in the stream engine: its checks and its open episodes.

:class:`SensorState` holds what :class:`~streams.sensor_engine.SensorEngine`
keeps per sensor; :class:`Episode` is one open alert of one of its checks.

An open episode takes a finding at every reading while its condition holds,
but its value, threshold and message are only read for an event (a change of
severity, the resolution) or a snapshot. So the engine does not copy them at
every reading: it leaves the latest finding *pending* on the episode
(:meth:`Episode.take`) and :meth:`Episode.settle` copies it when they are
read. A finding's message may be formatted only when read
(:class:`~detectors.base.LazyFinding`): a finding that is superseded before
anyone reads the episode costs no formatting at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cityeye.sensor_registry import Sensor
from detectors.base import Check, Finding
from streams.interval import IntervalLearner

__all__ = ["Episode", "SensorState"]


@dataclass
class Episode:
    """An open alert of one check of one sensor (JSON-able via :meth:`as_dict`).

    ``value``, ``threshold`` and ``message`` are those of the latest finding
    once :meth:`settle` d; a finding taken since waits in ``pending`` (not a
    field: it is never part of the JSON).
    """

    alert_id: str
    rule: str
    severity: str
    started_at: float
    value: float | None
    threshold: float | None
    message: str
    field: str | None = None

    #: the latest finding, not yet copied into value, threshold and message
    pending = None  # a plain class attribute, not a dataclass field

    def take(self, finding: Finding) -> None:
        """Note ``finding`` as the episode's latest (its field at once, the rest when settled).

        A finding without a field keeps the episode's field: the field is
        the last one any finding gave, as if each had been settled.
        """
        if finding.field is not None:
            self.field = finding.field
        self.pending = finding

    def settle(self) -> "Episode":
        """Copy the pending finding's value, threshold and message (formatting the message if lazy)."""
        finding = self.pending
        if finding is not None:
            self.value, self.threshold, self.message = finding.value, finding.threshold, finding.message
            self.pending = None
        return self

    def as_dict(self) -> dict[str, Any]:
        """The settled episode as plain data (``Episode(**d)`` rebuilds it)."""
        return asdict(self.settle())


@dataclass(slots=True)
class SensorState:
    """One sensor's checks, open episodes (by check name) and bookkeeping."""

    sensor: Sensor
    checks: list[Check]
    episodes: dict[str, Episode]
    #: position of the last reading included (``None``: unknown)
    position: int | None = None
    #: position of the restored snapshot: readings at or before it are in the state already
    floor: int | None = None
    #: readings (or ticks with events) since the last snapshot
    dirty: int = 0
    last_ts: float | None = None
    #: learns the reporting interval when the registry does not state it (streams/interval.py)
    learner: IntervalLearner | None = None

    def check_named(self, name: str) -> Check | None:
        """The check called ``name``, or ``None``."""
        return next((c for c in self.checks if c.name == name), None)

    def settled_episodes(self) -> dict[str, dict[str, Any]]:
        """Every open episode as plain data, its pending finding settled."""
        return {name: ep.as_dict() for name, ep in self.episodes.items()}
