"""What the dispatcher hands to a receiver, and the receiver interface.

The lifecycle/grouping side builds :class:`Notification` s, which show
their alerts as :class:`~alerts.model.AlertSnapshot` s (a view derived
from :class:`~alerts.model.Alert`, re-exported here); each channel
(webhook, CAP 1.2, MQTT, email) is one :class:`Notifier` in its own module
under ``alerts/notifiers/``. A notifier either returns (delivered: 2xx or
the channel's equivalent) or raises
:class:`~cityeye.errors.RetryableDeliveryError` (5xx, 429, timeouts,
connection refused: retried with backoff by the delivery loop) or
:class:`~cityeye.errors.PermanentDeliveryError` (other 4xx, bad config:
dead-lettered at once). Notifiers never put secrets in errors or logs.
"""

from __future__ import annotations

import abc
import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from alerts.model import LABELLED_FIELDS, AlertSnapshot

__all__ = ["AlertSnapshot", "Notification", "Notifier", "Backoff", "notification_id"]


def notification_id(receiver: str, group_key: str, version: int) -> str:
    """Deterministic id: the same group state for the same receiver, the same id.

    Used as the ``Idempotency-Key`` and as CAP's ``identifier``, so a retry or
    a restart that re-sends yields the same key and the receiver can dedup.
    """
    return hashlib.sha256(f"{receiver}|{group_key}|{version}".encode()).hexdigest()[:32]


@dataclass
class Notification:
    """A message for one receiver about one alert group.

    ``version`` increases each time the group's content changes; ``reason``
    says why it is sent (``new``, ``update``, ``repeat``, ``escalation``,
    ``reminder``, ``resolved``). ``previous_ids`` lists the ids of earlier
    notifications of this group to this receiver (CAP ``references``).
    """

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    version: int
    status: Literal["firing", "resolved"]
    reason: str
    alerts: list[AlertSnapshot]
    created_at: float
    summary: str = ""
    previous_ids: list[str] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = notification_id(self.receiver, self.group_key, self.version)

    @property
    def highest_severity(self) -> str:
        from cityeye.contracts import SEVERITY_RANK

        firing = [a for a in self.alerts if a.state == "firing"] or self.alerts
        return max((a.severity for a in firing), key=SEVERITY_RANK.__getitem__, default="blue")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored in the outbox, the body of JSON channels); empty labelled fields are left out."""
        d = asdict(self)
        d["alerts"] = [{k: v for k, v in a.items() if v or k not in LABELLED_FIELDS} for a in d["alerts"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Notification":
        d = dict(d)
        d["alerts"] = [AlertSnapshot(**a) for a in d.get("alerts", [])]
        return cls(**d)


class Notifier(abc.ABC):
    """One delivery channel. ``send`` returns on success, raises DeliveryError otherwise."""

    #: receiver name from the configuration
    name: str

    @abc.abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver ``notification`` once (the caller retries)."""

    async def close(self) -> None:
        """Release connections."""


@dataclass
class Backoff:
    """Exponential backoff with full jitter, capped; ``retry_after`` wins when given."""

    initial_s: float = 0.5
    max_s: float = 60.0
    factor: float = 2.0
    max_attempts: int = 8
    jitter: bool = True

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` starts at 1)."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_s)
        base = min(self.max_s, self.initial_s * self.factor ** (attempt - 1))
        if not self.jitter:
            return base
        return (rng or random).uniform(base / 2, base)
