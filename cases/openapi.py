"""OpenAPI 3 description of the cases API (served at ``/api/v1/cases/openapi.json``)."""

from __future__ import annotations

from typing import Any

from cases.evaluation import GROUPINGS
from cases.workflow import ACTIONS, STATES

__all__ = ["OPENAPI"]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = {"type": "object", "properties": {"error": {"type": "string"}}}
_CASE = {"type": "object", "description": "A case (store columns, names of its units, overdue, actions)",
         "properties": {"id": {"type": "integer"}, "code": {"type": "string"}, "state": {"enum": list(STATES)},
                        "urgency": {"enum": ["urgent", "high", "normal"]}, "overdue": {"type": "boolean"},
                        "actions": {"type": "array", "items": {"enum": list(ACTIONS)}}}}
_ERRORS = {"400": _json(_ERR, "bad request"), "401": _json(_ERR, "not signed in"),
           "403": _json(_ERR, "role may not"), "404": _json(_ERR, "no such case"),
           "409": _json(_ERR, "the case's state does not allow it")}
_AUTH = [{"bearer": []}]

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "CityEye cases (工单)", "version": "1",
             "description": "Closed-loop disposal of alerts and reports; see docs/cases.md"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/cases/session": {
            "post": {"summary": "Sign in", "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
                "responses": {"200": _json({"type": "object"}, "token and user"), "401": _ERRORS["401"]}},
            "delete": {"summary": "Sign out", "security": _AUTH, "responses": {"204": {"description": "signed out"}}},
        },
        "/api/v1/cases/me": {"get": {"summary": "The signed-in person", "security": _AUTH,
                                     "responses": {"200": _json({"type": "object"}, "person")}}},
        "/api/v1/cases": {
            "get": {"summary": "The board: visible cases, overdue first", "security": _AUTH,
                    "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                                   for n in ("state", "mine", "overdue")],
                    "responses": {"200": _json({"type": "array", "items": _CASE}, "cases"), **_ERRORS}},
            "post": {"summary": "File a case by hand (also a citizen report)", "security": _AUTH,
                     "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                         "title": {"type": "string"}, "category": {"type": "string"},
                         "description": {"type": "string"}, "urgency": {"type": "string"},
                         "unit": {"type": "string"}, "lat": {"type": "number"}, "lon": {"type": "number"},
                         "source": {"enum": ["manual", "citizen"]}, "reporter": {"type": "string"},
                         "department": {"type": "string"}}}}}},
                     "responses": {"201": _json(_CASE, "the case"), **_ERRORS}},
        },
        "/api/v1/cases/org": {"get": {"summary": "Units with GeoJSON boundaries, departments", "security": _AUTH,
                                      "responses": {"200": _json({"type": "object"}, "org")}}},
        "/api/v1/cases/evaluation": {"get": {
            "summary": "综合评价 figures", "security": _AUTH,
            "parameters": [{"name": "by", "in": "query", "schema": {"enum": list(GROUPINGS)}}],
            "responses": {"200": _json({"type": "array", "items": {"type": "object"}}, "rows")}}},
        "/api/v1/cases/evaluation.csv": {"get": {
            "summary": "The same as CSV", "security": _AUTH,
            "parameters": [{"name": "by", "in": "query", "schema": {"enum": list(GROUPINGS)}}],
            "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}}}},
        "/api/v1/cases/health": {"get": {"summary": "Liveness and database", "responses": {
            "200": _json({"type": "object"}, "ok"), "503": _json(_ERR, "database down")}}},
        "/api/v1/cases/openapi.json": {"get": {"summary": "This document",
                                               "responses": {"200": _json({"type": "object"}, "spec")}}},
        "/api/v1/cases/{code}": {"get": {
            "summary": "A case with its timeline and linked alerts", "security": _AUTH,
            "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json(_CASE, "the case"), **_ERRORS}}},
        "/api/v1/cases/{code}/actions/{action}": {"post": {
            "summary": "Do an action (see the workflow table)", "security": _AUTH,
            "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "action", "in": "path", "required": True, "schema": {"enum": list(ACTIONS)}}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                "reason": {"type": "string"}, "report": {"type": "string"}, "note": {"type": "string"},
                "evidence": {"type": "array", "items": {"type": "string", "format": "uri"}},
                "department": {"type": "string"}, "unit": {"type": "string"}}}}}},
            "responses": {"200": _json(_CASE, "the case after the action"), **_ERRORS}}},
    },
}
