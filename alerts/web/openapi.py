"""OpenAPI 3 description of the dispatcher's HTTP API (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from alerts.web.devices import DEVICE_STATUSES

__all__ = ["OPENAPI"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {code: {"$ref": f"#/components/responses/E{code}"} for code in ("400", "401", "403", "404", "409", "422")}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED = [{"bearer": []}]


def _alert_action(summary: str, body: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": _SECURED, "parameters": [_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(body)}}},
        "responses": {"200": _json(_ref("AlertWithTimeline"), "the alert after the action"), **_ERRORS},
    }}


_STR = {"type": "string"}
_NUM = {"type": "number"}
_NULLNUM = {"type": "number", "nullable": True}
_INT = {"type": "integer"}
_DEVICE_STATUSES = list(DEVICE_STATUSES)

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "CityEye alert dispatcher API", "version": "1.0.0",
             "description": "Alerts (list, inspect, acknowledge, assign, comment, resolve), silences "
                             "and device health."},
    "servers": [{"url": "/"}],
    # every call needs a bearer token: reads a read token or the write token, writes the write token
    "security": _SECURED,
    "paths": {
        "/api/v1/alerts": {"get": {
            "summary": "List alerts (active first, then recently resolved)",
            "parameters": [
                {"name": "state", "in": "query", "schema": {"type": "string", "enum": [
                    "firing", "resolved", "active", "acknowledged", "silenced", "inhibited", "flapping"]}},
                {"name": "district", "in": "query", "schema": _STR},
                {"name": "severity", "in": "query", "schema": {"type": "string", "enum": ["blue", "yellow", "orange", "red"]}},
                {"name": "kind", "in": "query", "schema": _STR},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}},
            ],
            "responses": {"200": _json({"type": "object", "properties": {
                "alerts": {"type": "array", "items": _ref("Alert")}, "total": {"type": "integer"}}}, "alerts"),
                "422": _ERRORS["422"]},
        }},
        "/api/v1/alerts/{id}": {"get": {
            "summary": "One alert with its timeline", "parameters": [_ID],
            "responses": {"200": _json(_ref("AlertWithTimeline"), "the alert"), "404": _ERRORS["404"]},
        }},
        "/api/v1/alerts/{id}/ack": _alert_action("Acknowledge an alert (stops escalation and reminders)", "AckBody"),
        "/api/v1/alerts/{id}/assign": _alert_action("Assign an alert to someone", "AssignBody"),
        "/api/v1/alerts/{id}/resolve": _alert_action("Resolve an alert by hand", "AckBody"),
        "/api/v1/alerts/{id}/comment": _alert_action("Comment on an alert", "CommentBody"),
        "/api/v1/silences": {
            "get": {"summary": "List silences", "responses": {"200": _json({"type": "object", "properties": {
                "silences": {"type": "array", "items": _ref("Silence")}}}, "silences")}},
            "post": {"summary": "Create a silence", "security": _SECURED,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SilenceBody")}}},
                     "responses": {"201": _json(_ref("Silence"), "the silence"), **_ERRORS}},
        },
        "/api/v1/silences/{id}": {"delete": {
            "summary": "Expire a silence now", "security": _SECURED, "parameters": [_ID],
            "responses": {"200": _json(_ref("Silence"), "the expired silence"), **_ERRORS},
        }},
        "/api/v1/notifications/dead": {"get": {
            "summary": "Notifications whose retries ran out (redelivering, dead, replayed, delivered)",
            "parameters": [{"name": "state", "in": "query", "schema": {"type": "string", "enum": [
                "redelivering", "dead", "replayed", "delivered"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "notifications": {"type": "array", "items": _ref("DeadNotification")},
                "total": {"type": "integer"}}}, "dead notifications"), "422": _ERRORS["422"]},
        }},
        "/api/v1/notifications/dead/{id}/replay": {"post": {
            "summary": "Queue a dead notification again, due at once (same id and Idempotency-Key)",
            "parameters": [_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["by"], "properties": {"by": _STR}}}}},
            "responses": {"200": _json(_ref("DeadNotification"), "the dead notification, now replayed"), **_ERRORS},
        }},
        "/api/v1/devices": {"get": {
            "summary": "Device health as the ingest gateway reports it (problems first)",
            "parameters": [{"name": "district", "in": "query", "schema": _STR},
                           {"name": "kind", "in": "query", "schema": _STR},
                           {"name": "status", "in": "query", "schema": {"type": "string", "enum": _DEVICE_STATUSES}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "devices": {"type": "array", "items": _ref("Device")}, "total": {"type": "integer"}}}, "devices"),
                "422": _ERRORS["422"]},
        }},
        "/api/v1/devices/{id}": {"get": {
            "summary": "One device's health", "parameters": [_ID],
            "responses": {"200": _json(_ref("Device"), "the device"), "404": _ERRORS["404"]},
        }},
        "/api/v1/status": {"get": {"summary": "Counts of alerts, groups, silences, outbox",
                                   "responses": {"200": _json({"type": "object"}, "status")}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": _json({"type": "object"}, "spec")}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {code: _json(_ref("Error"), text) for code, text in (
            ("E400", "request body is not JSON"), ("E401", "missing or wrong bearer token"),
            ("E403", "a read-only token on a write action"), ("E404", "unknown id"),
            ("E409", "the action does not fit the current state"), ("E422", "invalid fields (named in the message)"))},
        "schemas": {
            "DeadNotification": {"type": "object", "properties": {
                "id": _STR, "receiver": _STR, "at": _NUM, "attempts": {"type": "integer"}, "reason": _STR,
                "state": {"type": "string", "enum": ["redelivering", "dead", "replayed", "delivered"]},
                "replayed_by": _STR, "notification": {"type": "object"}}},
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "status": {"type": "integer"}, "message": _STR}}}},
            "Alert": {"type": "object", "properties": {
                "alert_id": _STR, "sensor_id": _STR, "kind": _STR, "district": _STR, "rule": _STR,
                "severity": {"type": "string", "enum": ["blue", "yellow", "orange", "red"]},
                "state": {"type": "string", "enum": ["firing", "resolved"]},
                "status": {"type": "string", "enum": ["active", "acknowledged", "silenced", "inhibited", "flapping", "resolved"]},
                "started_at": _NUM, "updated_at": _NUM, "ended_at": _NULLNUM, "value": _NULLNUM, "threshold": _NULLNUM,
                "message": _STR, "labels": {"type": "object", "additionalProperties": _STR},
                "acknowledged_by": {"type": "string", "nullable": True}, "assignee": {"type": "string", "nullable": True},
                "silenced_by": {"type": "array", "items": _STR}, "inhibited_by": {"type": "array", "items": _STR},
                "flapping": {"type": "boolean"}}},
            "TimelineEntry": {"type": "object", "properties": {
                "ts": _NUM, "action": _STR, "actor": _STR, "detail": _STR, "receiver": _STR,
                "attempt": {"type": "integer"}, "status": _STR}},
            "AlertWithTimeline": {"allOf": [_ref("Alert"), {"type": "object", "properties": {
                "timeline": {"type": "array", "items": _ref("TimelineEntry")}}}]},
            "AckBody": {"type": "object", "required": ["by"], "additionalProperties": False,
                        "properties": {"by": _STR, "comment": _STR}},
            "AssignBody": {"type": "object", "required": ["by", "assignee"], "additionalProperties": False,
                           "properties": {"by": _STR, "assignee": _STR}},
            "CommentBody": {"type": "object", "required": ["by", "text"], "additionalProperties": False,
                            "properties": {"by": _STR, "text": _STR}},
            "Matcher": {"oneOf": [
                {"type": "string", "description": "label<op>value, op one of = != =~ !~", "example": "district=pudong"},
                {"type": "object", "required": ["label", "value"], "properties": {
                    "label": _STR, "op": {"type": "string", "enum": ["=", "!=", "=~", "!~"]}, "value": _STR}}]},
            "SilenceBody": {"type": "object", "required": ["matchers", "created_by", "comment"],
                            "additionalProperties": False, "properties": {
                "matchers": {"type": "array", "minItems": 1, "items": _ref("Matcher")},
                "starts_at": {"description": "epoch seconds or RFC 3339; default now"},
                "ends_at": {"description": "epoch seconds or RFC 3339"},
                "duration": {"description": "seconds or e.g. '2h' (instead of ends_at)"},
                "created_by": _STR, "comment": _STR}},
            "Device": {"type": "object", "description": "times: epoch seconds of the gateway clock (null: never); "
                       "counters since the gateway started; rates per second over its last reporting interval",
                       "properties": {
                "sensor_id": _STR, "kind": _STR, "district": _STR, "last_seen": _NULLNUM, "last_reading_at": _NULLNUM,
                "messages": _INT, "readings": _INT, "dead_letters": _INT, "rate_limited": _INT,
                "message_rate_per_s": _NUM, "dead_letter_rate_per_s": _NUM,
                "last_reason": {"type": "string", "nullable": True, "description": "<code>: <detail> (docs/contracts.md)"},
                "last_reason_at": _NULLNUM, "updated_at": _NUM, "gateway": _STR,
                "status": {"type": "string", "enum": _DEVICE_STATUSES},
                "age_s": {"type": "number", "description": "seconds since the gateway published this record"}}},
            "Silence": {"type": "object", "properties": {
                "id": _STR, "matchers": {"type": "array", "items": _ref("Matcher")}, "starts_at": _NUM, "ends_at": _NUM,
                "created_by": _STR, "comment": _STR, "created_at": _NUM, "expired_at": _NULLNUM,
                "state": {"type": "string", "enum": ["pending", "active", "expired"]}}},
        },
    },
}
