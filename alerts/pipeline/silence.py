"""Silences and recurring maintenance windows.

A :class:`Silence` is Alertmanager's: label matchers (``=``, ``!=``,
``=~``, ``!~``; regexes are anchored), a start and an end, who created it
and why. A :class:`MaintenanceWindow` is a recurring silence, e.g. gauge
X every Tuesday 02:00–04:00 Asia/Shanghai. :class:`Silencer` is the
muter over both (status ``silenced``): a silenced alert is still
recorded, in the store and the history; it is only left out of
notifications.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from alerts.config import MaintenanceWindowConfig
from alerts.model import Alert
from alerts.pipeline.matchers import Matcher, matchers_from_specs, matches_all

__all__ = ["Silence", "MaintenanceWindow", "Silencer"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Silence:
    """A one-off silence, ``starts_at <= now < ends_at``."""

    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = 0.0
    #: set when expired early through the API
    expired_at: float | None = None

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if not self.created_by.strip():
            raise ValueError("created_by must not be empty")

    def active_at(self, now: float) -> bool:
        end = self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)
        return self.starts_at <= now < end

    def state(self, now: float) -> str:
        if self.active_at(now):
            return "active"
        return "pending" if now < self.starts_at and self.expired_at is None else "expired"

    def matches(self, labels: dict[str, str], now: float) -> bool:
        return self.active_at(now) and matches_all(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["matchers"] = [asdict(m) for m in self.matchers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Silence":
        d = dict(d)
        d["matchers"] = matchers_from_specs(d["matchers"])
        return cls(**d)


class MaintenanceWindow:
    """A recurring window on given weekdays between ``start`` and ``end`` local time.

    ``end`` earlier than ``start`` means the window crosses midnight (it
    belongs to the weekday it starts on).
    """

    def __init__(self, cfg: MaintenanceWindowConfig) -> None:
        self.name = cfg.name
        self.comment = cfg.comment
        self.matchers = matchers_from_specs(cfg.matchers)
        self.tz = ZoneInfo(cfg.timezone)
        self.days = {_WEEKDAYS.index(d) for d in cfg.weekdays} or set(range(7))
        self.start = self._minutes(cfg.start)
        self.end = self._minutes(cfg.end)

    @staticmethod
    def _minutes(hhmm: str) -> int:
        h, m = hhmm.split(":")
        return int(h) * 60 + int(m)

    def active_at(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, self.tz)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= minute < self.end
        if self.start == self.end:
            return local.weekday() in self.days
        # crosses midnight: today's late part or yesterday's window continuing
        yesterday = (local - timedelta(days=1)).weekday()
        return (local.weekday() in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)

    def matches(self, labels: dict[str, str], now: float) -> bool:
        return self.active_at(now) and matches_all(self.matchers, labels)


class Silencer:
    """Silences and maintenance windows as one :class:`~alerts.pipeline.muting.Muter`.

    ``silences`` gives the current silences (the engine's, which the API
    adds to and expires); the reasons are their ids, then ``window:<name>``
    of the matching windows.
    """

    field, muted, unmuted = "silenced_by", "silenced", "unsilenced"

    def __init__(self, silences: Callable[[], Iterable[Silence]], windows: list[MaintenanceWindow]) -> None:
        self.silences, self.windows = silences, windows

    def mutes(self, alert: Alert, now: float) -> list[str]:
        labels = alert.label_set()
        out = [s.id for s in self.silences() if s.matches(labels, now)]
        out += [f"window:{w.name}" for w in self.windows if w.matches(labels, now)]
        return out

    def mutes_others(self, alert: Alert) -> bool:
        """Never: a silence depends only on the alert it mutes."""
        return False
