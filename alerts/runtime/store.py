"""Dispatcher state that survives a restart: SQLite (WAL) in ``settings.state_dir``.

Tables: ``alerts`` (active and recently resolved alerts with their
timelines), ``groups`` (aggregation groups with their notification
counters and escalation state), ``silences``, ``outbox`` (notifications
persisted *before* they are sent; a row leaves the outbox only when
delivered or dead-lettered), ``notification_log`` (ids delivered per
receiver: a restart never sends one twice), ``deadletters`` and
``history_outbox`` (history records waiting for InfluxDB).

Every change caused by one Kafka batch, one timer tick or one API call is
a single transaction (:meth:`Store.transaction`); the dispatcher commits
its Kafka offsets only after that transaction committed, so after
``kill -9`` it re-reads at most the uncommitted events, which the alerts'
``seen_events`` make idempotent.

Partitions (alerts/dispatcher.py): a re-keying stage copies
``alerts.events`` into ``alerts.grouped`` by shard key and each dispatcher
worker owns some partitions, keeping one SQLite file per partition
(``dispatcher-p<N>.sqlite``, see :func:`state_path`) which moves with the
partition on a rebalance (a state_dir shared by the workers); unsharded,
everything is in partition 0's file. ``dispatcher.sqlite`` is the former
single dispatcher's file, adopted on upgrade (alerts/runtime/upgrade.py).
The ``actions`` table records the outcome of each API action a partition's
owner applied (by request id: a replayed action is applied once, and the
worker whose API published it reads the outcome); the APIs open the
partition files read-only (``Store(path, readonly=True)``).
See docs/alerting.md.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["Store", "OutboxRow", "state_path", "pending_work"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, alert_key TEXT NOT NULL, active INTEGER NOT NULL,
    updated REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_active ON alerts(active, alert_key);
CREATE TABLE IF NOT EXISTS groups (group_key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, receiver TEXT NOT NULL, created REAL NOT NULL, attempts INTEGER NOT NULL,
    next_attempt REAL NOT NULL, last_error TEXT NOT NULL DEFAULT '', body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(receiver, next_attempt);
CREATE TABLE IF NOT EXISTS notification_log (
    id TEXT PRIMARY KEY, receiver TEXT NOT NULL, delivered REAL NOT NULL, attempts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deadletters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_notifications (
    id TEXT PRIMARY KEY, receiver TEXT NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, reason TEXT NOT NULL, replayed_by TEXT NOT NULL DEFAULT '', body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY, at REAL NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL);
"""


def state_path(state_dir: str | Path, partition: int | None = None) -> Path:
    """The SQLite file of one ``alerts.grouped`` partition (without one: the former single dispatcher's)."""
    name = "dispatcher.sqlite" if partition is None else f"dispatcher-p{partition}.sqlite"
    return Path(state_dir) / name


def pending_work(path: Path) -> int:
    """Active alerts plus unsent notifications in an existing state file (0 if there is none)."""
    if not path.exists():
        return 0
    store = Store(path, readonly=True)
    try:
        return len(store.active_alerts()) + store.outbox_size()
    finally:
        store.close()


class OutboxRow:
    __slots__ = ("id", "receiver", "attempts", "next_attempt", "last_error", "body")

    def __init__(self, id: str, receiver: str, attempts: int, next_attempt: float, last_error: str, body: str) -> None:
        self.id, self.receiver, self.attempts = id, receiver, attempts
        self.next_attempt, self.last_error, self.body = next_attempt, last_error, body


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Store:
    """One SQLite database; not thread-safe (the dispatcher is one asyncio loop)."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        """Open (creating) the state file; ``readonly`` opens an existing one for reads only."""
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", isolation_level=None, uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        self._depth = 0
        #: False when no history writer runs (InfluxDB disabled): history records are not kept
        self.history_enabled = True

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Atomic unit of work; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- alerts -------------------------------------------------------------
    def save_alert(self, d: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO alerts(alert_id, alert_key, active, updated, body) VALUES (?,?,?,?,?)",
            (d["alert_id"], f"{d['sensor_id']}|{d['rule']}", int(d["state"] == "firing"), time.time(), _dump(d)),
        )

    def latest_event_time(self) -> float | None:
        """The latest ``updated_at`` of the alerts kept (the event time a restarted partition resumes from)."""
        return self.db.execute("SELECT MAX(json_extract(body, '$.updated_at')) FROM alerts").fetchone()[0]

    def active_alerts(self) -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM alerts WHERE active = 1")]

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def resolved_alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT body FROM alerts WHERE active = 0 ORDER BY updated DESC LIMIT ?", (limit,))
        return [json.loads(b) for (b,) in rows]

    def prune(self, older_than: float) -> int:
        """Forget resolved alerts and delivered ids last touched before ``older_than``.

        Safe because notification ids embed the group's creation time: an id
        older than the retention is never generated again.
        """
        n = self.db.execute("DELETE FROM alerts WHERE active = 0 AND updated < ?", (older_than,)).rowcount
        n += self.db.execute("DELETE FROM notification_log WHERE delivered < ?", (older_than,)).rowcount
        n += self.db.execute("DELETE FROM actions WHERE at < ?", (older_than,)).rowcount
        return n

    # -- groups and silences --------------------------------------------------
    def save_group(self, key: str, d: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO groups(group_key, body) VALUES (?,?)", (key, _dump(d)))

    def delete_group(self, key: str) -> None:
        self.db.execute("DELETE FROM groups WHERE group_key = ?", (key,))

    def groups(self) -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM groups")]

    def save_silence(self, d: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO silences(id, body) VALUES (?,?)", (d["id"], _dump(d)))

    def silences(self) -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in self.db.execute("SELECT body FROM silences")]

    # -- outbox and notification log -----------------------------------------
    def outbox_add(self, nid: str, receiver: str, body: dict[str, Any], now: float) -> bool:
        """Persist a notification to send; False if it was already queued or delivered."""
        if self.delivered(nid):
            return False
        cur = self.db.execute(
            "INSERT OR IGNORE INTO outbox(id, receiver, created, attempts, next_attempt, body) VALUES (?,?,?,?,?,?)",
            (nid, receiver, now, 0, now, _dump(body)),
        )
        return cur.rowcount == 1

    def outbox_due(self, receiver: str, now: float, limit: int = 50) -> list[OutboxRow]:
        """Rows to send: never attempted (due at once, whatever clock queued them) or retries due by ``now``,
        in the order they were queued (same ``created``: insertion order)."""
        rows = self.db.execute(
            "SELECT id, receiver, attempts, next_attempt, last_error, body FROM outbox "
            "WHERE receiver = ? AND (attempts = 0 OR next_attempt <= ?) ORDER BY created, rowid LIMIT ?",
            (receiver, now, limit))
        return [OutboxRow(*r) for r in rows]

    def outbox_next_time(self, receiver: str, after: float = float("-inf")) -> float | None:
        """The earliest retry of ``receiver`` due after ``after`` (``None``: none; unattempted rows are due at once)."""
        row = self.db.execute("SELECT MIN(next_attempt) FROM outbox WHERE receiver = ? AND attempts > 0 "
                              "AND next_attempt > ?",
                              (receiver, after)).fetchone()
        return row[0]

    def outbox_receivers(self) -> list[str]:
        return [r for (r,) in self.db.execute("SELECT DISTINCT receiver FROM outbox")]

    def outbox_size(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def outbox_attempted(self, nid: str, attempts: int, next_attempt: float, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
                        (attempts, next_attempt, error[:500], nid))

    def outbox_remove(self, nid: str) -> None:
        self.db.execute("DELETE FROM outbox WHERE id = ?", (nid,))

    def mark_delivered(self, nid: str, receiver: str, attempts: int, now: float) -> None:
        self.db.execute("INSERT OR IGNORE INTO notification_log(id, receiver, delivered, attempts) VALUES (?,?,?,?)",
                        (nid, receiver, now, attempts))
        self.outbox_remove(nid)

    def delivered(self, nid: str) -> bool:
        return self.db.execute("SELECT 1 FROM notification_log WHERE id = ?", (nid,)).fetchone() is not None

    def delivered_count(self, receiver: str | None = None) -> int:
        if receiver is None:
            return self.db.execute("SELECT COUNT(*) FROM notification_log").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM notification_log WHERE receiver = ?", (receiver,)).fetchone()[0]

    # -- API actions applied by the owner of a partition (several workers) -----
    def save_action_outcome(self, action_id: str, status: int, body: dict[str, Any], now: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO actions(id, at, status, body) VALUES (?,?,?,?)",
                        (action_id, now, status, _dump(body)))

    def action_outcome(self, action_id: str) -> tuple[int, dict[str, Any]] | None:
        """``(status, body)`` of an applied action, ``None`` if not applied (yet)."""
        row = self.db.execute("SELECT status, body FROM actions WHERE id = ?", (action_id,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def group_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM groups").fetchone()[0]

    # -- dead letters and history --------------------------------------------
    def add_deadletter(self, kind: str, reason: str, body: dict[str, Any], now: float) -> None:
        self.db.execute("INSERT INTO deadletters(at, kind, reason, body) VALUES (?,?,?,?)",
                        (now, kind, reason[:1000], _dump(body)))

    def deadletters(self, kind: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT at, kind, reason, body FROM deadletters", ()
        if kind:
            q, args = q + " WHERE kind = ?", (kind,)
        return [{"at": at, "kind": k, "reason": r, "body": json.loads(b)} for at, k, r, b in self.db.execute(q, args)]

    # -- notifications whose retries ran out: redelivered, or replayed by an operator --------
    def dead_notification_put(self, nid: str, receiver: str, state: str, attempts: int, reason: str,
                              body: dict[str, Any], now: float) -> None:
        """Record (or update) a notification whose retries ran out: ``redelivering`` or ``dead``."""
        self.db.execute(
            "INSERT INTO dead_notifications(id, receiver, at, state, attempts, reason, body) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET at = excluded.at, state = excluded.state, attempts = excluded.attempts, "
            "reason = excluded.reason", (nid, receiver, now, state, attempts, reason[:1000], _dump(body)))

    def dead_notification_state(self, nid: str, state: str, replayed_by: str = "") -> None:
        self.db.execute("UPDATE dead_notifications SET state = ?, replayed_by = CASE WHEN ? = '' THEN replayed_by "
                        "ELSE ? END WHERE id = ?", (state, replayed_by, replayed_by, nid))

    def dead_notifications(self, state: str | None = None, limit: int = 500,
                           nid: str | None = None) -> list[dict[str, Any]]:
        """Newest first; each ``{id, receiver, at, state, attempts, reason, replayed_by, notification}``."""
        where = [(c, v) for c, v in (("state", state), ("id", nid)) if v]
        q = "SELECT id, receiver, at, state, attempts, reason, replayed_by, body FROM dead_notifications"
        if where:
            q += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
        rows = self.db.execute(q + " ORDER BY at DESC, id LIMIT ?", (*(v for _, v in where), limit))
        keys = ("id", "receiver", "at", "state", "attempts", "reason", "replayed_by")
        return [{**dict(zip(keys, r[:7])), "notification": json.loads(r[7])} for r in rows]

    def dead_notification(self, nid: str) -> dict[str, Any] | None:
        found = self.dead_notifications(nid=nid, limit=1)
        return found[0] if found else None

    def outbox_requeue(self, nid: str) -> bool:
        """Make a queued notification due at once with fresh attempts; False if it is not in the outbox."""
        return self.db.execute("UPDATE outbox SET attempts = 0, last_error = '' WHERE id = ?", (nid,)).rowcount == 1

    def history_add(self, records: list[dict[str, Any]]) -> None:
        if not self.history_enabled or not records:
            return
        self.db.executemany("INSERT INTO history_outbox(body) VALUES (?)", [(_dump(r),) for r in records])

    def history_batch(self, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        rows = self.db.execute("SELECT seq, body FROM history_outbox ORDER BY seq LIMIT ?", (limit,))
        return [(seq, json.loads(b)) for seq, b in rows]

    def history_done(self, upto_seq: int) -> None:
        self.db.execute("DELETE FROM history_outbox WHERE seq <= ?", (upto_seq,))
