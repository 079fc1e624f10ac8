"""Cases, their timeline and linked alerts, users, sessions, the notification outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=False, server_default="")


def upgrade() -> None:
    s = sa.String
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("category", s(40), nullable=False), sa.Column("title", s(200), nullable=False),
        _text("description"), sa.Column("source", s(20), nullable=False),
        sa.Column("reporter", s(200), nullable=False, server_default=""),
        sa.Column("lat", sa.Float), sa.Column("lon", sa.Float),
        sa.Column("unit", s(40), nullable=False), sa.Column("district", s(40), nullable=False, server_default=""),
        sa.Column("group_key", s(120), nullable=False, server_default=""),
        sa.Column("rule", s(80), nullable=False, server_default=""),
        sa.Column("urgency", s(10), nullable=False), sa.Column("clock", s(10), nullable=False),
        sa.Column("state", s(20), nullable=False), sa.Column("suspended_from", s(20)),
        sa.Column("department", s(40)), sa.Column("dispatch_unit", s(40)),
        sa.Column("duty_unit", s(40), nullable=False),
        sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stage", s(20)), sa.Column("stage_started_at", sa.Float),
        sa.Column("deadline_at", sa.Float), sa.Column("escalate_at", sa.Float), sa.Column("remind_at", sa.Float),
        sa.Column("reminded", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_by", s(64), nullable=False), sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False), sa.Column("closed_at", sa.Float),
        sa.Column("returns", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reopens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("ix_cases_open_group", "cases", ["group_key", "state"])
    op.create_index("ix_cases_escalate", "cases", ["escalate_at"])
    op.create_index("ix_cases_remind", "cases", ["remind_at"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("ts", sa.Float, nullable=False), sa.Column("action", s(20), nullable=False),
        sa.Column("actor", s(64), nullable=False), sa.Column("role", s(20), nullable=False, server_default=""),
        sa.Column("from_state", s(20)), sa.Column("to_state", s(20)), sa.Column("stage", s(20)),
        sa.Column("stage_seconds", sa.Float), sa.Column("on_time", sa.Boolean),
        _text("reason"), _text("report"),
        sa.Column("evidence", sa.Text, nullable=False, server_default="[]"),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    )
    op.create_index("ix_case_events_case", "case_events", ["case_id", "id"])
    op.create_table(
        "case_alerts",
        sa.Column("event_id", s(64), primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("alert_id", s(200), nullable=False), sa.Column("sensor_id", s(64), nullable=False),
        sa.Column("kind", s(40), nullable=False), sa.Column("rule", s(80), nullable=False),
        sa.Column("severity", s(10), nullable=False), sa.Column("state", s(10), nullable=False),
        sa.Column("value", sa.Float), sa.Column("threshold", sa.Float), _text("message"),
        sa.Column("ts", sa.Float, nullable=False),
    )
    op.create_index("ix_case_alerts_case", "case_alerts", ["case_id"])
    op.create_table(
        "users",
        sa.Column("username", s(64), primary_key=True), sa.Column("password_hash", s(200), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", s(64), primary_key=True), sa.Column("username", s(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False), sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("receiver", s(80), nullable=False), sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False), sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"), sa.Column("sent_at", sa.Float),
        _text("last_error"),
    )
    op.create_index("ix_outbox_due", "outbox", ["sent_at", "next_at"])


def downgrade() -> None:
    for table in ("outbox", "sessions", "users", "case_alerts", "case_events", "cases"):
        op.drop_table(table)
