"""Fixtures and helpers of the cases tests: a PostgreSQL server, a running cases service, signed-in clients.

``pg_server`` starts PostgreSQL 15 from Debian's package once per session
(launch.servers.PostgresServer); ``database_url`` gives each test a fresh
database on it, or a fresh SQLite file (the tests are parametrized over
both with ``DATABASES``). ``CasesHarness`` runs the real service (HTTP API
on a free loopback port, ticker and outbox) with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import psycopg
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr

import cases.auth

from cases.config import CasesConfig, ListenConfig, parse_cases_config
from cases.service import CasesService
from cases.sla import SlaConfig
from cityeye.config import InfluxSettings, Settings
from cityeye.contracts import AlertEvent
from cityeye.sensor_registry import load_registry
from launch.servers import PostgresServer
from simulators import DEMO_REGISTRY

__all__ = ["pg_server", "database_url", "DATABASES", "CasesHarness", "harness", "alert_event", "PASSWORD",
           "T0", "cases_config"]

REPO = Path(__file__).resolve().parent.parent
DATABASES = ["sqlite", "postgresql"]
PASSWORD = "correct horse battery"
#: Thursday 2026-12-03 10:00 Asia/Shanghai, a working day
T0 = 1796263200.0
#: argon2id at its smallest cost, for the harness's passwords only: it gives every person of the demo org
#: one, and at the production cost (a tenth to half a second a hash) that was most of each cases test's
#: time; signing in still verifies a real argon2id hash (the cost is read from the hash)
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


def _fresh_pg_database(server: PostgresServer) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return _fresh_pg_database(request.getfixturevalue("pg_server"))


def cases_config(database_url: str, cap_dir: Path, **overrides: Any) -> CasesConfig:
    """The demo cases config on ``database_url``, its CAP desks in ``cap_dir``, a free port."""
    text = (REPO / "cases" / "demo_cases.yaml").read_text(encoding="utf-8")
    config = parse_cases_config(text, "demo_cases.yaml", base=REPO / "cases")
    for receiver in config.receivers:
        setattr(receiver, "directory", str(cap_dir / receiver.name))
    return config.model_copy(update={"database_url": SecretStr(database_url),
                                     "listen": ListenConfig(host="127.0.0.1", port=0), **overrides})


class CasesHarness:
    """A running :class:`CasesService` with a movable clock and HTTP helpers."""

    def __init__(self, config: CasesConfig, settings: Settings | None = None) -> None:
        self.now = T0
        self.service = CasesService(config, settings, load_registry(DEMO_REGISTRY), clock=lambda: self.now)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.http: aiohttp.ClientSession | None = None
        self.tokens: dict[str, str] = {}

    async def start(self, consume_alerts: bool = False) -> "CasesHarness":
        with mock.patch.object(cases.auth, "_HASHER", CHEAP_HASHER):
            for username in self.service.org.people:
                self.service.auth.set_password(username, PASSWORD, self.now)
        self.task = asyncio.create_task(self.service.run(self.stop, consume_alerts=consume_alerts))
        for _ in range(100):
            if self.service.port:
                break
            await asyncio.sleep(0.05)
        self.http = aiohttp.ClientSession(f"http://127.0.0.1:{self.service.port}")
        return self

    async def close(self) -> None:
        if self.http:
            await self.http.close()
        self.stop.set()
        if self.task:
            await self.task

    async def sign_in(self, username: str, password: str = PASSWORD) -> tuple[int, dict[str, Any]]:
        async with self.http.post("/api/v1/cases/session", json={"username": username, "password": password}) as r:
            body = await r.json()
            if r.status == 200:
                self.tokens[username] = body["token"]
            return r.status, body

    async def call(self, who: str | None, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if who and who not in self.tokens:
            status, answer = await self.sign_in(who)
            assert status == 200, answer
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        async with self.http.request(method, f"/api/v1/cases{path}", json=body, headers=headers) as r:
            text = await r.text()
            return r.status, (json.loads(text) if r.content_type == "application/json" else text)

    async def act(self, who: str, code: str, action: str, **body: Any) -> tuple[int, Any]:
        return await self.call(who, "POST", f"/{code}/actions/{action}", body)

    async def ok(self, who: str, code: str, action: str, **body: Any) -> dict[str, Any]:
        status, answer = await self.act(who, code, action, **body)
        assert status == 200, answer
        return answer


@pytest.fixture
async def harness(database_url, tmp_path):
    """The service with the demo org and policy but the default SLA (hours: no timer fires unless moved)."""
    h = await CasesHarness(cases_config(database_url, tmp_path / "cap", sla=SlaConfig()),
                           Settings(influx=InfluxSettings(enabled=False))).start()
    yield h
    await h.close()


def alert_event(sensor_id: str = "wl-huangpu-01", kind: str = "water_level", rule: str = "water_level.warning",
                severity: str = "orange", state: str = "firing", at: float = T0, alert_id: str | None = None,
                value: float = 5.3, district: str = "huangpu") -> AlertEvent:
    return AlertEvent(alert_id=alert_id or f"{sensor_id}|{rule}|{int(at)}", sensor_id=sensor_id, kind=kind,
                      district=district, rule=rule, severity=severity, state=state, started_at=at, updated_at=at,
                      value=value, threshold=5.2, message=f"water level {value} m above the guaranteed level 5.2 m",
                      labels={"sensor_name": "Suzhou Creek at Waibaidu Bridge"})
