"""The API's view of the dispatcher: every partition's state, actions through their owners.

:class:`ClusterView` offers what :func:`alerts.web.api.create_app` uses of an
:class:`~alerts.pipeline.dispatch_engine.Engine` (``active``, ``get``, ``silences``,
``stats``, ``store.resolved_alerts`` and the write actions), over all
partitions of ``alerts.grouped``:

* reads open the partition state files (``<state_dir>/dispatcher-p<N>.sqlite``)
  read-only, so any worker's API sees every alert, whoever owns it;
* an alert action (ack / assign / resolve / comment) is published as an
  action record (alerts/runtime/actions.py) to the partition holding the alert and
  the API waits (``sharding.action_timeout``) until the owner has applied it,
  then answers with the outcome, as if it had applied it itself;
* silences are broadcast to every partition (each engine keeps its copy),
  and the API waits until all partitions applied them.

A timeout answers 503; the action stays on the topic and is still applied
once the partition's owner reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from aiohttp import web

from alerts.runtime.actions import REPLAY_OP, encode_action, outcome_result
from alerts.pipeline.dispatch_engine import ActionConflict, AlertNotFound
from alerts.model import Alert
from alerts.pipeline.silence import Silence
from alerts.runtime.store import Store, state_path

__all__ = ["ClusterView"]

log = logging.getLogger(__name__)

#: publish(partition, record value) puts an action record on alerts.grouped
Publish = Callable[[int, bytes], Awaitable[None]]
_POLL_S = 0.02


class ClusterView:
    """Engine-like facade for the API over all partition state files of ``state_dir``."""

    def __init__(self, state_dir: str | Path, partitions: Callable[[], int], publish: Publish,
                 owned: Callable[[], list[int]], timeout: float, clock: Callable[[], float]) -> None:
        self.state_dir, self.partitions, self.publish = Path(state_dir), partitions, publish
        self.owned, self.timeout, self.clock = owned, timeout, clock
        self._stores: dict[int, Store] = {}

    # -- partition files (read-only) -----------------------------------------------
    def _store(self, p: int) -> Store | None:
        store = self._stores.get(p)
        if store is None:
            path = state_path(self.state_dir, p)
            if not path.exists():
                return None
            store = self._stores[p] = Store(path, readonly=True)
        return store

    def _each(self) -> Iterator[tuple[int, Store]]:
        for p in range(self.partitions()):
            store = self._store(p)
            if store is not None:
                yield p, store

    def _read(self, fn: Callable[[Store], Any], p: int, store: Store) -> Any:
        """``fn(store)``; a connection that went bad is reopened once, then the API answers 503."""
        try:
            return fn(store)
        except sqlite3.Error as exc:
            log.info("re-opening state file of partition %d for reading: %s", p, exc)
            self._stores.pop(p, None)
            store.close()
        try:
            fresh = self._store(p)
            return fn(fresh) if fresh is not None else None
        except sqlite3.Error as exc:
            bad = self._stores.pop(p, None)
            if bad is not None:
                bad.close()
            raise web.HTTPServiceUnavailable(reason=f"state of partition {p} is not readable now: {exc}") from None

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    # -- what the API reads ----------------------------------------------------------
    @property
    def store(self) -> "ClusterView":
        return self

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes go through the partitions' owners, each in its own transaction."""
        yield

    @property
    def active(self) -> dict[str, Alert]:
        out: dict[str, Alert] = {}
        for p, store in self._each():
            for d in self._read(Store.active_alerts, p, store) or []:
                out[f"{p}:{d['alert_id']}"] = Alert.from_dict(d)
        return out

    def resolved_alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for p, store in self._each():
            rows += self._read(lambda s: s.resolved_alerts(limit), p, store) or []
        rows.sort(key=lambda d: -float(d.get("updated_at", 0.0)))
        return rows[:limit]

    def _locate(self, alert_id: str) -> tuple[int, Alert] | None:
        for p, store in self._each():
            d = self._read(lambda s: s.get_alert(alert_id), p, store)
            if d is not None:
                return p, Alert.from_dict(d)
        return None

    def get(self, alert_id: str) -> Alert | None:
        found = self._locate(alert_id)
        return found[1] if found else None

    @property
    def silences(self) -> dict[str, Silence]:
        """Each silence once; a copy already expired in some partition wins."""
        out: dict[str, Silence] = {}
        for p, store in self._each():
            for d in self._read(Store.silences, p, store) or []:
                silence = Silence.from_dict(d)
                if silence.id not in out or silence.expired_at is not None:
                    out[silence.id] = silence
        return out

    def stats(self) -> dict[str, Any]:
        totals = {"active_alerts": 0, "groups": 0, "outbox": 0}
        for p, store in self._each():
            counts = self._read(lambda s: (len(s.active_alerts()), s.group_count(), s.outbox_size()), p, store)
            for name, n in zip(totals, counts or (0, 0, 0)):
                totals[name] += n
        return {**totals, "silences": len(self.silences),
                "partitions": {"total": self.partitions(), "owned": self.owned()}}

    # -- write actions -----------------------------------------------------------------
    async def _outcome(self, p: int, action_id: str) -> tuple[int, dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            store = self._store(p)
            found = self._read(lambda s: s.action_outcome(action_id), p, store) if store is not None else None
            if found is not None:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise web.HTTPServiceUnavailable(
                    reason=f"partition {p} did not apply the action within {self.timeout:g} s; "
                           "it stays queued and is applied when the partition's owner reads it")
            await asyncio.sleep(_POLL_S)

    async def _alert_action(self, op: str, alert_id: str, **fields: Any) -> Alert:
        found = self._locate(alert_id)
        if found is None:
            raise AlertNotFound(f"no alert with id {alert_id[:64]!r}")
        p = found[0]
        action_id, value = encode_action(op, alert_id=alert_id, **fields)
        await self.publish(p, value)
        return _result(*await self._outcome(p, action_id))

    async def _broadcast(self, op: str, **fields: Any) -> Silence:
        action_id, value = encode_action(op, **fields)
        n = self.partitions()
        for p in range(n):
            await self.publish(p, value)
        outcomes = [await self._outcome(p, action_id) for p in range(n)]
        ok = [o for o in outcomes if o[0] == 200]
        return _result(*(ok[0] if ok else outcomes[0]), silence=True)

    async def acknowledge(self, alert_id: str, actor: str, now: float, comment: str = "") -> Alert:
        return await self._alert_action("ack", alert_id, by=actor, comment=comment)

    async def assign(self, alert_id: str, actor: str, assignee: str, now: float) -> Alert:
        return await self._alert_action("assign", alert_id, by=actor, assignee=assignee)

    async def comment(self, alert_id: str, actor: str, text: str, now: float) -> Alert:
        return await self._alert_action("comment", alert_id, by=actor, text=text)

    async def resolve(self, alert_id: str, actor: str, now: float, comment: str = "") -> Alert:
        return await self._alert_action("resolve", alert_id, by=actor, comment=comment)

    def dead_notifications(self, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for p, store in self._each():
            rows += self._read(lambda s: s.dead_notifications(state, limit), p, store) or []
        return sorted(rows, key=lambda d: (-d["at"], d["id"]))[:limit]

    async def replay_notification(self, notification_id: str, by: str, now: float) -> dict[str, Any]:
        """Have the owner of the partition holding dead notification ``notification_id`` queue it again."""
        for p, store in self._each():
            if self._read(lambda s: s.dead_notification(notification_id), p, store) is not None:
                action_id, value = encode_action(REPLAY_OP, notification_id=notification_id, by=by)
                await self.publish(p, value)
                return _result(*await self._outcome(p, action_id), raw=True)
        raise AlertNotFound(f"no dead notification with id {notification_id[:64]!r}")

    async def add_silence(self, silence: Silence, now: float) -> Silence:
        silence.created_at = silence.created_at or now
        return await self._broadcast("silence_add", silence=silence.to_dict())

    async def expire_silence(self, silence_id: str, now: float) -> Silence:
        silence = self.silences.get(silence_id)
        if silence is None:
            raise AlertNotFound(f"no silence with id {silence_id[:64]!r}")
        if silence.state(now) == "expired":
            raise ActionConflict(f"silence {silence_id} has already expired")
        return await self._broadcast("silence_expire", silence_id=silence_id, at=now)


def _result(status: int, body: dict[str, Any], silence: bool = False, raw: bool = False) -> Any:
    try:
        return outcome_result(status, body, silence, raw)
    except ValueError as exc:  # the owner found the action malformed
        raise web.HTTPUnprocessableEntity(reason=str(exc)[:500]) from None
