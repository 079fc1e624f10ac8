"""Test helpers for the notifiers and sinks: a scripted HTTP receiver, sample notifications."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from alerts.notification import AlertSnapshot, Notification

__all__ = ["Receiver", "ReceivedRequest", "sample_alert", "sample_notification"]


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real aiohttp server on a free loopback port answering a script of statuses.

    ``script`` items are a status, ``(status, headers)``, or a float: sleep
    that many seconds, then 200; once used up every request gets
    ``default``. Every request is recorded.
    """

    script: list = field(default_factory=list)
    default: int = 200
    requests: list[ReceivedRequest] = field(default_factory=list)
    url: str = ""

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), await request.read()))
        step = self.script.pop(0) if self.script else self.default
        if isinstance(step, float):
            await asyncio.sleep(step)
            step = 200
        status, headers = step if isinstance(step, tuple) else (step, {})
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "nope")


def sample_alert(i: int = 1, **kw) -> AlertSnapshot:
    base = dict(alert_id=f"alert-{i}", sensor_id=f"wl-{i}", kind="water_level", district="huangpu",
                rule="flood_level", severity="orange", state="firing", started_at=1_750_000_000.0,
                updated_at=1_750_000_060.0, value=4.2, threshold=4.0, message="水位超过警戒水位 <4.0 m> & rising",
                sensor_name="外滩水位站", lat=31.2397, lon=121.4905)
    base.update(kw)
    return AlertSnapshot(**base)


def sample_notification(version: int = 1, status: str = "firing", previous_ids=None, alerts=None,
                        created_at: float = 1_750_000_061.0, receiver: str = "ops") -> Notification:
    return Notification(receiver=receiver, group_key="district=huangpu", group_labels={"district": "huangpu"},
                        version=version, status=status, reason="new" if version == 1 else "update",
                        alerts=alerts if alerts is not None else [sample_alert(1)], created_at=created_at,
                        summary="黄浦 flood warning", previous_ids=list(previous_ids or []))
