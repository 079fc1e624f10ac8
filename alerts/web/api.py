"""The dispatcher's HTTP API (aiohttp, JSON), bound to 127.0.0.1 by default.

=======  ====================================  ==========================================
GET      /api/v1/alerts                        filters: state (firing|resolved|active|
                                               acknowledged|silenced|inhibited|flapping),
                                               district, severity, kind, limit
GET      /api/v1/alerts/{id}                   one alert with its timeline
POST     /api/v1/alerts/{id}/ack               ``{"by", "comment"?}``
POST     /api/v1/alerts/{id}/assign            ``{"by", "assignee"}``
POST     /api/v1/alerts/{id}/resolve           ``{"by", "comment"?}``
POST     /api/v1/alerts/{id}/comment           ``{"by", "text"}``
GET      /api/v1/silences                      all silences with their state
POST     /api/v1/silences                      ``{"matchers", "starts_at"?, "ends_at" | "duration",
                                               "created_by", "comment"}``
DELETE   /api/v1/silences/{id}                 expire a silence
GET      /api/v1/notifications/dead            notifications whose retries ran out: state
                                               (redelivering|dead|replayed|delivered), limit
POST     /api/v1/notifications/dead/{id}/replay  ``{"by"}``: queue it again, due at once
GET      /api/v1/devices                       device health (alerts/web/devices.py); filters:
                                               district, kind, status
GET      /api/v1/devices/{id}                  one device's health
GET      /api/v1/status                        counts (health check)
GET      /api/v1/openapi.json                  OpenAPI 3 description
GET      /  and  /console/                     the duty officers' web console (alerts/web/console/)
=======  ====================================  ==========================================

Every ``/api/v1/`` call but the OpenAPI document needs ``Authorization:
Bearer <token>`` (alerts/web/auth.py): reads a read token (``api.read_tokens``)
or the write token (``api.token``), write actions the write token. Errors are
``{"error": {"status", "message"}}`` with 400 (bad JSON), 401 (token), 403 (a
read token on a write),
404 (unknown id), 409 (action does not fit the state) or 422 (invalid
fields, naming them).
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerts.config import ApiConfig, Matchers, parse_duration
from alerts.runtime.cluster_view import ClusterView
from alerts.runtime.device_health import DeviceHealthView
from alerts.runtime.redelivery import DEAD_STATES, replay
from alerts.web.auth import TokenAuth, token_middleware
from alerts.web.console import add_console_routes
from alerts.web.devices import add_device_routes
from alerts.pipeline.dispatch_engine import ActionConflict, AlertNotFound, Engine
from alerts.model import Alert
from alerts.web.openapi import OPENAPI
from alerts.pipeline.silence import Silence, matchers_from_specs
from cityeye.contracts import parse_ts

__all__ = ["create_app", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024
_Actor = Field(min_length=1, max_length=200)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AckBody(_Body):
    by: str = _Actor
    comment: str = Field("", max_length=2000)


class AssignBody(_Body):
    by: str = _Actor
    assignee: str = _Actor


class ReplayBody(_Body):
    by: str = _Actor


class CommentBody(_Body):
    by: str = _Actor
    text: str = Field(min_length=1, max_length=2000)


class SilenceBody(_Body):
    matchers: Matchers = Field(min_length=1)
    starts_at: float | None = None
    ends_at: float | None = None
    duration: float | None = None
    created_by: str = _Actor
    comment: str = Field(min_length=1, max_length=2000)

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _time(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_ts(v)
        return v

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


def _limit(request: web.Request) -> int | web.Response:
    """The ``limit`` query parameter (1 to 5000, default 500), or the 422 refusing it."""
    try:
        return max(1, min(5000, int(request.query.get("limit", "500"))))
    except ValueError:
        return _error(422, "limit: must be an integer")


def _fields(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors())


def create_app(engine: Engine | ClusterView, api: ApiConfig, on_commit: Callable[[], None] = lambda: None,
               clock: Callable[[], float] = time.time, devices: DeviceHealthView | None = None) -> web.Application:
    """The aiohttp application over ``engine`` (all handlers run on the engine's loop).

    ``devices``: the device-health view behind ``/api/v1/devices`` (empty when not given).

    The dispatcher passes its :class:`~alerts.runtime.cluster_view.ClusterView` (every
    partition's state, actions applied by their owners); an :class:`Engine` serves
    the same API directly (tests, tools).
    """
    store = engine.store

    @web.middleware
    async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, exc.reason)
            raise
        except AlertNotFound as exc:
            return _error(404, str(exc))
        except ActionConflict as exc:
            return _error(409, str(exc))

    async def body_of(request: web.Request, model: type[BaseModel]) -> BaseModel | web.Response:
        try:
            data = json.loads(await request.read() or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"request body is not JSON: {exc}")
        if not isinstance(data, dict):
            return _error(400, "request body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            return _error(422, _fields(exc))
        except ValueError as exc:
            return _error(422, str(exc))

    async def write(apply: Callable[[], Any]) -> Any:
        """One write in one store transaction; through the dispatcher's ClusterView the write is a
        coroutine that waits until the owner of the alert's partition applied it."""
        with store.transaction():
            result = apply()
        if inspect.isawaitable(result):
            result = await result
        on_commit()
        return result

    def visible(alert: Alert, q: dict[str, str]) -> bool:
        state = q.get("state")
        if state and state not in (alert.state, alert.status):
            return False
        return all(not q.get(k) or getattr(alert, k) == q[k] for k in ("district", "severity", "kind"))

    async def list_alerts(request: web.Request) -> web.Response:
        q = dict(request.query)
        limit = _limit(request)
        if isinstance(limit, web.Response):
            return limit
        alerts = list(engine.active.values())
        if q.get("state") in (None, "", "resolved"):
            alerts += [Alert.from_dict(d) for d in store.resolved_alerts(limit)]
        alerts = [a for a in alerts if visible(a, q)]
        alerts.sort(key=lambda a: (-a.updated_at, a.alert_id))
        return web.json_response({"alerts": [a.to_api() for a in alerts[:limit]], "total": len(alerts)})

    async def get_alert(request: web.Request) -> web.Response:
        alert = engine.get(request.match_info["id"])
        if alert is None:
            raise AlertNotFound(f"no alert with id {request.match_info['id'][:64]!r}")
        return web.json_response(alert.to_api(with_timeline=True))

    def action(model: type[BaseModel], apply: Callable[[str, Any, float], Alert]):
        async def handler(request: web.Request) -> web.Response:
            body = await body_of(request, model)
            if isinstance(body, web.Response):
                return body
            alert = await write(lambda: apply(request.match_info["id"], body, clock()))
            return web.json_response(alert.to_api(with_timeline=True))
        return handler

    async def list_silences(request: web.Request) -> web.Response:
        now = clock()
        out = [{**s.to_dict(), "state": s.state(now)} for s in engine.silences.values()]
        return web.json_response({"silences": sorted(out, key=lambda s: -s["created_at"])})

    async def create_silence(request: web.Request) -> web.Response:
        body = await body_of(request, SilenceBody)
        if isinstance(body, web.Response):
            return body
        now = clock()
        starts = body.starts_at if body.starts_at is not None else now
        ends = body.ends_at if body.ends_at is not None else (starts + body.duration if body.duration else None)
        if ends is None:
            return _error(422, "ends_at or duration: one of them is required")
        try:
            silence = Silence(matchers_from_specs(body.matchers), starts, ends, body.created_by, body.comment,
                              created_at=now)
        except ValueError as exc:
            return _error(422, str(exc))
        await write(lambda: engine.add_silence(silence, now))
        return web.json_response({**silence.to_dict(), "state": silence.state(now)}, status=201)

    async def expire_silence(request: web.Request) -> web.Response:
        now = clock()
        silence = await write(lambda: engine.expire_silence(request.match_info["id"], now))
        return web.json_response({**silence.to_dict(), "state": silence.state(now)})

    async def dead_notifications(request: web.Request) -> web.Response:
        state = request.query.get("state") or None
        if state is not None and state not in DEAD_STATES:
            return _error(422, f"state: one of {', '.join(DEAD_STATES)}")
        limit = _limit(request)
        if isinstance(limit, web.Response):
            return limit
        rows = store.dead_notifications(state, limit)
        return web.json_response({"notifications": rows, "total": len(rows)})

    async def replay_notification(request: web.Request) -> web.Response:
        body = await body_of(request, ReplayBody)
        if isinstance(body, web.Response):
            return body
        nid = request.match_info["id"]
        if isinstance(engine, ClusterView):  # the owner of its partition applies it
            result = await write(lambda: engine.replay_notification(nid, body.by, clock()))
        else:
            result = await write(lambda: replay(engine, nid, body.by, clock()))
        return web.json_response(result)

    async def status(request: web.Request) -> web.Response:
        return web.json_response(engine.stats())

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    app = web.Application(middlewares=[errors, token_middleware(TokenAuth(api), _error)],
                          client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/{id}", get_alert)
    app.router.add_post("/api/v1/alerts/{id}/ack",
                        action(AckBody, lambda i, b, now: engine.acknowledge(i, b.by, now, b.comment)))
    app.router.add_post("/api/v1/alerts/{id}/assign",
                        action(AssignBody, lambda i, b, now: engine.assign(i, b.by, b.assignee, now)))
    app.router.add_post("/api/v1/alerts/{id}/resolve",
                        action(AckBody, lambda i, b, now: engine.resolve(i, b.by, now, b.comment)))
    app.router.add_post("/api/v1/alerts/{id}/comment",
                        action(CommentBody, lambda i, b, now: engine.comment(i, b.by, b.text, now)))
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", create_silence)
    app.router.add_delete("/api/v1/silences/{id}", expire_silence)
    app.router.add_get("/api/v1/notifications/dead", dead_notifications)
    app.router.add_post("/api/v1/notifications/dead/{id}/replay", replay_notification)
    app.router.add_get("/api/v1/status", status)
    add_device_routes(app, devices if devices is not None else DeviceHealthView(), clock)
    app.router.add_get("/api/v1/openapi.json", openapi)
    add_console_routes(app)
    return app
