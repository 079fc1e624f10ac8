"""The cases HTTP API (``/api/v1/cases…``, docs/cases.md) and the console's static files (``/cases/``).

Every database call runs in a worker thread (``asyncio.to_thread``): the
store is synchronous SQLAlchemy. A :class:`~cases.errors.CaseError` becomes
its HTTP status with ``{"error": message}``; messages never carry secrets.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web
from sqlalchemy import text

from cases.auth import Authenticator
from cases.casework import Casework
from cases.errors import BadRequestError, CaseError
from cases.evaluation import GROUPINGS, evaluate, to_csv
from cases.openapi import OPENAPI
from cases.org import Person
from cases.policy import plan_manual

__all__ = ["make_app", "CasesApi", "CONSOLE_DIR", "CONSOLE_CSP"]

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
#: the console loads nothing from elsewhere (offline duty rooms) and runs no inline script
CONSOLE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except CaseError as exc:
        return _json({"error": str(exc)}, exc.status)
    if request.path.startswith("/cases/"):
        response.headers["Content-Security-Policy"] = CONSOLE_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequestError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("the body must be a JSON object")
    return data


class CasesApi:
    """The handlers over one :class:`Casework` and :class:`Authenticator`; ``clock()`` is the server time."""

    def __init__(self, work: Casework, auth: Authenticator, clock: Callable[[], float]) -> None:
        self.work = work
        self.auth = auth
        self.clock = clock

    async def person(self, request: web.Request) -> Person:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        return await asyncio.to_thread(self.auth.person, token, self.clock())

    async def sign_in(self, request: web.Request) -> web.Response:
        body = await _body(request)
        username, password = str(body.get("username", "")), str(body.get("password", ""))
        token = await asyncio.to_thread(self.auth.sign_in, username, password, self.clock())
        return _json({"token": token, "user": self.work.org.people[username].model_dump()})

    async def sign_out(self, request: web.Request) -> web.Response:
        await self.person(request)
        await asyncio.to_thread(self.auth.sign_out, request.headers["Authorization"][7:].strip())
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.Response:
        person = await self.person(request)
        unit = self.work.org.units.get(person.unit)
        dept = self.work.org.departments.get(person.department or "")
        return _json({**person.model_dump(), "unit_name": unit.name if unit else "",
                      "level": unit.level if unit else "", "department_name": dept.name if dept else ""})

    async def board(self, request: web.Request) -> web.Response:
        person = await self.person(request)
        q = request.query
        rows = await asyncio.to_thread(self.work.board, person, self.clock(), mine=q.get("mine") in ("1", "true"),
                                       state=q.get("state") or None, overdue_only=q.get("overdue") in ("1", "true"))
        return _json(rows)

    async def file(self, request: web.Request) -> web.Response:
        person = await self.person(request)
        body = await _body(request)
        try:
            filing = plan_manual(body, self.work.org)
        except KeyError:
            raise BadRequestError(f"unknown unit {str(body.get('unit'))[:40]!r}") from None
        except (TypeError, ValueError):
            raise BadRequestError("lat and lon must be numbers") from None
        if filing.urgency not in ("urgent", "high", "normal") or filing.clock not in ("natural", "working"):
            raise BadRequestError("urgency is urgent, high or normal; clock natural or working")
        now = self.clock()
        case_id = await asyncio.to_thread(self.work.file_manual, filing, person, body, now)
        detail = await asyncio.to_thread(self.work.detail, str(case_id), person, now)
        return _json(detail, 201)

    async def detail(self, request: web.Request) -> web.Response:
        person = await self.person(request)
        return _json(await asyncio.to_thread(self.work.detail, request.match_info["code"], person, self.clock()))

    async def act(self, request: web.Request) -> web.Response:
        person = await self.person(request)
        body = await _body(request)
        if "evidence" in body and not isinstance(body["evidence"], list):
            raise BadRequestError("evidence is a list of URLs")
        view = await asyncio.to_thread(self.work.act, request.match_info["code"], request.match_info["action"],
                                       person, body, self.clock())
        return _json(view)

    async def org(self, request: web.Request) -> web.Response:
        await self.person(request)
        return _json(self.work.org.to_api())

    def _evaluation(self, by: str) -> list[dict[str, Any]]:
        if by not in GROUPINGS:
            raise BadRequestError(f"by is one of {', '.join(GROUPINGS)}")
        store = self.work.store
        return evaluate(store.list_cases(), store.all_events(), self.work.org, by, self.clock())

    async def evaluation(self, request: web.Request) -> web.Response:
        await self.person(request)
        return _json(await asyncio.to_thread(self._evaluation, request.query.get("by", "department")))

    async def evaluation_csv(self, request: web.Request) -> web.Response:
        await self.person(request)
        by = request.query.get("by", "department")
        rows = await asyncio.to_thread(self._evaluation, by)
        return web.Response(text=to_csv(rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="cases-evaluation-{by}.csv"'})

    async def health(self, request: web.Request) -> web.Response:
        def ping() -> None:
            with self.work.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        try:
            await asyncio.to_thread(ping)
        except Exception as exc:  # noqa: BLE001 - any database failure is "not healthy"
            return _json({"error": f"database: {type(exc).__name__}"}, 503)
        return _json({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(OPENAPI)


async def _console_index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(CONSOLE_DIR / "index.html")


def make_app(work: Casework, auth: Authenticator, clock: Callable[[], float]) -> web.Application:
    """The aiohttp application of the cases service."""
    api = CasesApi(work, auth, clock)
    app = web.Application(middlewares=[_errors], client_max_size=256 * 1024)
    base = "/api/v1/cases"
    app.router.add_post(f"{base}/session", api.sign_in)
    app.router.add_delete(f"{base}/session", api.sign_out)
    app.router.add_get(f"{base}/me", api.me)
    app.router.add_get(f"{base}/org", api.org)
    app.router.add_get(f"{base}/evaluation", api.evaluation)
    app.router.add_get(f"{base}/evaluation.csv", api.evaluation_csv)
    app.router.add_get(f"{base}/health", api.health)
    app.router.add_get(f"{base}/openapi.json", api.openapi)
    app.router.add_get(base, api.board)
    app.router.add_post(base, api.file)
    app.router.add_get(f"{base}/{{code}}", api.detail)
    app.router.add_post(f"{base}/{{code}}/actions/{{action}}", api.act)
    if (CONSOLE_DIR / "index.html").is_file():
        app.router.add_get("/cases/", _console_index)
        app.router.add_static("/cases/static/", CONSOLE_DIR)
    return app



