"""Test-only: InfluxDB 1.8's v2 write endpoint in front of an InfluxDB 1.x server.

InfluxDB 1.8+ accepts ``POST /api/v2/write?bucket=db/rp&org=..&precision=..``
with ``Authorization: Token username:password`` and writes to database
``db``, retention policy ``rp``. The test server here is InfluxDB 1.6,
which predates that endpoint, so this small aiohttp app maps such a
request onto the 1.x ``/write?db=..&rp=..&precision=..&u=..&p=..`` the same
way, letting the tests drive influxdb-client's real v2 write path against
a real ``influxd``. ``requests`` records what each request carried.
"""

from __future__ import annotations

import gzip

import aiohttp
from aiohttp import web

__all__ = ["InfluxV2Adapter"]

_PRECISIONS = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}


class InfluxV2Adapter:
    """An aiohttp server on a free loopback port forwarding v2 writes to ``influx_url``."""

    def __init__(self, influx_url: str) -> None:
        self.influx_url = influx_url.rstrip("/")
        self.requests: list[dict] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/v2/write", self._write)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _write(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Token "):
            return web.json_response({"code": "unauthorized", "message": "missing token"}, status=401)
        user, _, password = auth[len("Token "):].partition(":")
        bucket = request.query.get("bucket", "")
        db, _, rp = bucket.partition("/")
        precision = _PRECISIONS.get(request.query.get("precision", "ns"))
        if not db or precision is None:
            return web.json_response({"code": "invalid", "message": "bad bucket or precision"}, status=400)
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests.append({"bucket": bucket, "org": request.query.get("org"), "user": user,
                              "precision": request.query.get("precision"), "body": body})
        params = {"db": db, "precision": precision, "u": user, "p": password}
        if rp:
            params["rp"] = rp
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.influx_url}/write", params=params, data=body) as resp:
                text = await resp.read()
                return web.Response(status=resp.status, body=text,
                                    content_type=resp.content_type or "application/json")
