"""The cases database: tables, engine, migrations, transactions (SQLAlchemy 2 Core).

SQLite is the embedded default (``sqlite:///var/cases/cases.db``: WAL, each
write transaction ``BEGIN IMMEDIATE`` so two writers never interleave);
PostgreSQL in production (``postgresql+psycopg://user:pw@host/db``), where a
case is locked with ``SELECT … FOR UPDATE`` for its transition and the
ticker takes due cases with ``FOR UPDATE SKIP LOCKED``. The schema is made
by the Alembic migrations in ``cases/migrations/`` (:func:`migrate`), never
by ``create_all``; :data:`METADATA` is what the code reads and writes, and a
test checks the migrated database against it.

Every change of a case is one transaction (:meth:`CaseStore.transaction`):
its row, its timeline row and its outbox rows commit together or not at all.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        create_engine, event, insert, select, update)
from sqlalchemy.engine import Connection, Engine

__all__ = ["METADATA", "CASES", "EVENTS", "CASE_ALERTS", "USERS", "SESSIONS", "OUTBOX", "MIGRATIONS",
           "CaseStore", "migrate", "make_engine"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
METADATA = MetaData()

CASES = Table(
    "cases", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("category", String(40), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("source", String(20), nullable=False),          # alert | manual | citizen
    Column("reporter", String(200), nullable=False, default=""),
    Column("lat", Float), Column("lon", Float),
    Column("unit", String(40), nullable=False),            # the grid (or deepest unit) it is in
    Column("district", String(40), nullable=False, default=""),
    Column("group_key", String(120), nullable=False, default=""),
    Column("rule", String(80), nullable=False, default=""),
    Column("urgency", String(10), nullable=False),
    Column("clock", String(10), nullable=False),
    Column("state", String(20), nullable=False),
    Column("suspended_from", String(20)),
    Column("department", String(40)),
    Column("dispatch_unit", String(40)),                   # the level/unit it is dispatched at
    Column("duty_unit", String(40), nullable=False),       # whose duty desk watches it (rises on escalation)
    Column("escalation_level", Integer, nullable=False, default=0),
    Column("stage", String(20)),
    Column("stage_started_at", Float),
    Column("deadline_at", Float),                         # the stage's deadline (fixed for the stage)
    Column("escalate_at", Float),                         # the next escalation (the deadline, then again)
    Column("remind_at", Float),
    Column("reminded", Boolean, nullable=False, default=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("closed_at", Float),
    Column("returns", Integer, nullable=False, default=0),
    Column("reopens", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=1),
    Index("ix_cases_open_group", "group_key", "state"),
    Index("ix_cases_escalate", "escalate_at"),
    Index("ix_cases_remind", "remind_at"),
)

EVENTS = Table(
    "case_events", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("action", String(20), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(20), nullable=False, default=""),
    Column("from_state", String(20)),
    Column("to_state", String(20)),
    Column("stage", String(20)),                            # the SLA stage left
    Column("stage_seconds", Float),                         # how long it took
    Column("on_time", Boolean),                             # whether before its deadline
    Column("reason", Text, nullable=False, default=""),
    Column("report", Text, nullable=False, default=""),
    Column("evidence", Text, nullable=False, default="[]"),  # JSON list of URLs
    Column("detail", Text, nullable=False, default="{}"),    # JSON
    Index("ix_case_events_case", "case_id", "id"),
)

CASE_ALERTS = Table(
    "case_alerts", METADATA,
    Column("event_id", String(64), primary_key=True),      # an alert event links once, to one case
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("alert_id", String(200), nullable=False),
    Column("sensor_id", String(64), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("rule", String(80), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("state", String(10), nullable=False),
    Column("value", Float), Column("threshold", Float),
    Column("message", Text, nullable=False, default=""),
    Column("ts", Float, nullable=False),
    Index("ix_case_alerts_case", "case_id"),
)

USERS = Table(
    "users", METADATA,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
)

SESSIONS = Table(
    "sessions", METADATA,
    Column("token_sha256", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

OUTBOX = Table(
    "outbox", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receiver", String(80), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_at", Float),
    Column("last_error", Text, nullable=False, default=""),
    Index("ix_outbox_due", "sent_at", "next_at"),
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with the Alembic migrations."""
    logging.getLogger("alembic").setLevel(logging.WARNING)   # its INFO lines say nothing an operator needs
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class CaseStore:
    """Reads and transactional writes of cases.

    ``pause`` is a test hook called with a step name between the writes of
    a transition (``"case-updated"``); a test stops the process there.
    """

    def __init__(self, engine: Engine, pause: Callable[[str], None] | None = None) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.pause = pause or (lambda step: None)

    @classmethod
    def open(cls, url: str, **kw: Any) -> "CaseStore":
        store = cls(make_engine(url), **kw)
        migrate(store.engine)
        return store

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def lock_case(self, conn: Connection, case_id: int) -> dict[str, Any] | None:
        """The case row, locked for this transaction (``FOR UPDATE`` on PostgreSQL)."""
        query = select(CASES).where(CASES.c.id == case_id)
        if self.postgres:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def due_cases(self, conn: Connection, now: float, limit: int = 100) -> list[dict[str, Any]]:
        """Open cases whose deadline or reminder is due, locked (``SKIP LOCKED`` on PostgreSQL)."""
        due = ((CASES.c.escalate_at <= now) | ((CASES.c.remind_at <= now) & (CASES.c.reminded.is_(False))))
        query = select(CASES).where(due, CASES.c.state != "closed").order_by(CASES.c.escalate_at).limit(limit)
        if self.postgres:
            query = query.with_for_update(skip_locked=True)
        return [dict(r) for r in conn.execute(query).mappings()]

    @staticmethod
    def insert_case(conn: Connection, values: dict[str, Any]) -> int:
        return int(conn.execute(insert(CASES).values(**values)).inserted_primary_key[0])

    def update_case(self, conn: Connection, case: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` to the locked ``case`` (bumping its version); returns the new row."""
        changes = {**changes, "version": case["version"] + 1}
        conn.execute(update(CASES).where(CASES.c.id == case["id"]).values(**changes))
        return {**case, **changes}

    @staticmethod
    def add_event(conn: Connection, case_id: int, ts: float, action: str, actor: str, **kw: Any) -> None:
        for key in ("evidence", "detail"):
            if key in kw and not isinstance(kw[key], str):
                kw[key] = json.dumps(kw[key], ensure_ascii=False)
        conn.execute(insert(EVENTS).values(case_id=case_id, ts=ts, action=action, actor=actor, **kw))

    @staticmethod
    def add_outbox(conn: Connection, receiver: str, payload: dict[str, Any], now: float) -> None:
        conn.execute(insert(OUTBOX).values(receiver=receiver, payload=json.dumps(payload, ensure_ascii=False),
                                           created_at=now, next_at=now))

    # -- reads
    def get_case(self, case_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(CASES).where(CASES.c.id == case_id)).mappings().first()
            return dict(row) if row else None

    def timeline(self, case_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(EVENTS).where(EVENTS.c.case_id == case_id).order_by(EVENTS.c.id)).mappings()
            return [_event(r) for r in rows]

    def alerts_of(self, case_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(CASE_ALERTS).where(CASE_ALERTS.c.case_id == case_id).order_by(CASE_ALERTS.c.ts)
            return [dict(r) for r in conn.execute(query).mappings()]

    def list_cases(self, *, states: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            query = select(CASES)
            if states:
                query = query.where(CASES.c.state.in_(states))
            return [dict(r) for r in conn.execute(query.order_by(CASES.c.id)).mappings()]

    def all_events(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Every timeline row (of every case) with an id above ``after_id``, in order."""
        with self.engine.connect() as conn:
            query = select(EVENTS).where(EVENTS.c.id > after_id).order_by(EVENTS.c.id)
            return [_event(r) for r in conn.execute(query).mappings()]


def _event(row: Any) -> dict[str, Any]:
    """A timeline row with its JSON columns decoded."""
    d = dict(row)
    d["evidence"] = json.loads(d["evidence"] or "[]")
    d["detail"] = json.loads(d["detail"] or "{}")
    return d
