"""An operator's replay of a notification whose retries ran out.

The delivery workers (alerts/runtime/delivery.py) keep every notification
whose retries ran out in the partition's ``dead_notifications`` table:
``redelivering`` (still queued, redelivered on a slow backoff until the
receiver takes it), ``dead`` (refused for good, e.g. HTTP 404 or 401:
nothing sends it again by itself), ``replayed`` (an operator queued it
again) or ``delivered``. :func:`replay` queues one again, due at once with
a fresh round of attempts, in the caller's transaction, as the owner of its
partition applies an API action (alerts/runtime/actions.py). Its id, and so
its ``Idempotency-Key``, stays the same, and the notification log still
keeps it from being delivered twice.
"""

from __future__ import annotations

from typing import Any

from alerts.notification import Notification
from alerts.pipeline.dispatch_engine import ActionConflict, AlertNotFound, Engine

__all__ = ["DEAD_STATES", "replay"]

DEAD_STATES = ("redelivering", "dead", "replayed", "delivered")


def replay(engine: Engine, notification_id: str, by: str, now: float) -> dict[str, Any]:
    """Queue dead notification ``notification_id`` again; returns its dead-notification record.

    Raises :class:`AlertNotFound` for an unknown id and :class:`ActionConflict`
    for one that was delivered meanwhile.
    """
    store = engine.store
    dead = store.dead_notification(notification_id)
    if dead is None:
        raise AlertNotFound(f"no dead notification with id {notification_id[:64]!r}")
    if dead["state"] == "delivered" or store.delivered(notification_id):
        store.dead_notification_state(notification_id, "delivered")
        raise ActionConflict(f"notification {notification_id} has been delivered already")
    note = Notification.from_dict(dead["notification"])
    if not store.outbox_requeue(notification_id):
        store.outbox_add(notification_id, note.receiver, dead["notification"], now)
    store.dead_notification_state(notification_id, "replayed", by)
    engine.record_delivery(note, 0, "replayed", f"replayed by {by}", now)
    engine.woken.add(note.receiver)
    return store.dead_notification(notification_id)
