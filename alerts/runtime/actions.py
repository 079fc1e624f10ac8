"""Officer actions as Kafka records, applied by the owner of the alert's partition.

An alert's state is owned by the dispatcher worker that owns its
``alerts.grouped`` partition. The API of any worker turns a write action
(ack / assign / resolve / comment, or a silence created or expired) into a
record on that partition (silences: on every partition), marked with the
``cityeye-action`` header, so the owner applies it *in order with the
alert's events*, in the same transaction as the rest of its batch.

Record body (JSON)::

    {"id": "<uuid hex>", "op": "ack" | "assign" | "resolve" | "comment"
                               | "silence_add" | "silence_expire" | "notification_replay",
     "alert_id", "by", "comment", "assignee", "text",   # alert actions
     "silence" (a Silence dict), "silence_id", "at",     # silence actions
     "notification_id", "by"}                            # replay of a dead notification

The owner records the outcome under the action id in its state file
(``Store.save_action_outcome``: status 200 with the alert or silence, 404,
409 or 422 with a message); a replayed record (at-least-once Kafka) finds
its outcome and is not applied again. The publishing API reads the outcome
from the partition file (:func:`outcome_result`).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from alerts.pipeline.dispatch_engine import ActionConflict, AlertNotFound, Engine
from alerts.model import Alert
from alerts.pipeline.silence import Silence
from alerts.runtime.redelivery import replay

__all__ = ["ACTION_HEADER", "SOURCE_HEADER", "ALERT_OPS", "REPLAY_OP", "header", "encode_action", "apply_action",
           "outcome_result"]

#: header marking an API action on alerts.grouped (events carry none)
ACTION_HEADER = "cityeye-action"
#: header with an event's original ``topic/partition/offset`` in alerts.events
SOURCE_HEADER = "cityeye-source"
ALERT_OPS = ("ack", "assign", "resolve", "comment")
_SILENCE_OPS = ("silence_add", "silence_expire")
REPLAY_OP = "notification_replay"


def header(rec: Any, name: str) -> bytes | None:
    """Value of Kafka header ``name`` of ``rec`` (``None`` if absent)."""
    for key, value in getattr(rec, "headers", None) or ():
        if key == name:
            return value or b""
    return None


def encode_action(op: str, **fields: Any) -> tuple[str, bytes]:
    """A new action's id and record value."""
    if op not in (*ALERT_OPS, *_SILENCE_OPS, REPLAY_OP):
        raise ValueError(f"unknown action {op!r}")
    action_id = uuid.uuid4().hex
    return action_id, json.dumps({"id": action_id, "op": op, **fields}, ensure_ascii=False).encode()


def _text(d: dict[str, Any], name: str, required: bool = True) -> str:
    value = d.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"action field {name!r} must be a{' non-empty' if required else ''} string")
    return value


def _apply(engine: Engine, d: dict[str, Any], now: float) -> dict[str, Any]:
    op = d.get("op")
    if op in ALERT_OPS:
        alert_id, by = _text(d, "alert_id"), _text(d, "by")
        if op == "ack":
            alert = engine.acknowledge(alert_id, by, now, _text(d, "comment", False))
        elif op == "assign":
            alert = engine.assign(alert_id, by, _text(d, "assignee"), now)
        elif op == "resolve":
            alert = engine.resolve(alert_id, by, now, _text(d, "comment", False))
        else:
            alert = engine.comment(alert_id, by, _text(d, "text"), now)
        return alert.to_dict()
    if op == "silence_add":
        if not isinstance(d.get("silence"), dict):
            raise ValueError("action field 'silence' must be an object")
        try:
            silence = Silence.from_dict(d["silence"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"action field 'silence' is not a silence: {exc}") from None
        return engine.add_silence(silence, now).to_dict()
    if op == "silence_expire":
        at = d.get("at", now)
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ValueError("action field 'at' must be a number (epoch seconds)")
        # expired when the officer asked (as the API answers), never later than the owner's clock
        return engine.expire_silence(_text(d, "silence_id"), min(now, float(at))).to_dict()
    if op == REPLAY_OP:
        return replay(engine, _text(d, "notification_id"), _text(d, "by"), now)
    raise ValueError(f"unknown action {str(op)[:40]!r}")


def apply_action(engine: Engine, raw: bytes, now: float) -> str | None:
    """Apply an action record in the caller's transaction; returns a dead-letter reason if malformed.

    The outcome (also of a refused or malformed action with an id) is saved
    under the action id; an action whose outcome is already saved is skipped.
    """
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"action record is not JSON: {exc}"
    if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not 0 < len(d["id"]) <= 64:
        return "action record must be a JSON object with an 'id' string of at most 64 chars"
    store = engine.store
    if store.action_outcome(d["id"]) is not None:
        return None  # a replay: applied once already
    problem = None
    try:
        status, body = 200, _apply(engine, d, now)
    except AlertNotFound as exc:
        status, body = 404, {"message": str(exc)}
    except ActionConflict as exc:
        status, body = 409, {"message": str(exc)}
    except ValueError as exc:
        status, body = 422, {"message": str(exc)}
        problem = f"invalid action: {exc}"
    store.save_action_outcome(d["id"], status, body, now)
    return problem


def outcome_result(status: int, body: dict[str, Any], silence: bool = False,
                   raw: bool = False) -> Alert | Silence | dict[str, Any]:
    """The API's view of an outcome: the alert (or silence, or with ``raw`` the body itself), or the error
    the engine raised."""
    if status == 200:
        if raw:
            return body
        return Silence.from_dict(body) if silence else Alert.from_dict(body)
    message = str(body.get("message", "action refused"))
    if status == 404:
        raise AlertNotFound(message)
    if status == 409:
        raise ActionConflict(message)
    raise ValueError(message)
