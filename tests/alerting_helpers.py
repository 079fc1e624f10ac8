"""Shared helpers for the alerting tests: events, configs, a recording webhook receiver."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from alerts.config import AlertingConfig, parse_alerting_config
from alerts.notification import Notification, Notifier
from cityeye.contracts import AlertEvent, alert_id_for
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["event", "config", "Receiver", "HttpNotifier"]


def event(sensor: str, state: str = "firing", severity: str = "orange", *, rule: str = "level_warning",
          district: str = "pudong", kind: str = "water_level", started_at: float = 1000.0, updated_at: float = 1000.0,
          value: float | None = 5.0, **labels: str) -> AlertEvent:
    return AlertEvent(alert_id=alert_id_for(sensor, rule, started_at), sensor_id=sensor, kind=kind,
                      district=district, rule=rule, severity=severity, state=state, started_at=started_at,
                      updated_at=updated_at, value=value, threshold=4.0, message=f"{sensor} {state} {severity}",
                      labels=dict(labels))


def config(receivers: list[str | dict] | None = None, **sections: Any) -> AlertingConfig:
    """A config with ``receivers`` (names get an unused webhook URL; dicts are taken as they are)."""
    specs = [r if isinstance(r, dict) else {"name": r, "type": "webhook", "url": f"http://127.0.0.1:9/{r}"}
             for r in receivers or ["desk"]]
    names = [r["name"] for r in specs]
    data: dict[str, Any] = {
        "receivers": specs,
        "route": {"receiver": names[0], "group_wait": 0, "group_interval": 0, "repeat_interval": 3600},
        "timings": {"keep_firing_for": 0, "tick": 0.05},
        "delivery": {"max_attempts": 5, "backoff_initial": 0.05, "backoff_max": 0.2, "jitter": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_alerting_config(data, "test")


@dataclass
class Receiver:
    """An aiohttp server that records notifications; ``script`` lists status codes to answer first."""

    script: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    delivered_keys: list[str] = field(default_factory=list)
    port: int = 0

    async def _handle(self, request: web.Request) -> web.Response:
        if "xml" in request.headers.get("Content-Type", ""):
            text = await request.text()
            msg_type = re.search(r"<msgType>(\w+)</msgType>", text)
            body = {"reason": "cap", "msgType": msg_type.group(1) if msg_type else "", "xml": text}
            ident = re.search(r"<identifier>([^<]+)</identifier>", text)
            key = request.headers.get("Idempotency-Key", ident.group(1) if ident else "")
        else:
            body = await request.json()
            key = request.headers.get("Idempotency-Key", "")
        body["_path"] = request.match_info["name"]
        self.keys.append(key)
        status = self.script.pop(0) if self.script else 200
        if status < 300:
            if key not in self.delivered_keys:
                self.received.append(body)
            self.delivered_keys.append(key)
        return web.json_response({"ok": status < 300}, status=status)

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def distinct_delivered(self) -> int:
        return len(set(self.delivered_keys))

    def reasons(self, path: str | None = None) -> Counter:
        return Counter(n["reason"] for n in self.received if path is None or n["_path"] == path)

    def to(self, path: str) -> list[dict[str, Any]]:
        return [n for n in self.received if n["_path"] == path]

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"receiver condition not met; got {[n['reason'] for n in self.received]}")
            await asyncio.sleep(0.02)


class HttpNotifier(Notifier):
    """A test-local webhook: POST JSON with Idempotency-Key; 5xx/429 retryable, other 4xx permanent."""

    def __init__(self, name: str, url: str) -> None:
        import aiohttp

        self.name, self.url = name, url
        self._session = aiohttp.ClientSession()

    async def send(self, notification: Notification) -> None:
        body = json.dumps(notification.to_dict()).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": notification.id}
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise RetryableDeliveryError(f"HTTP {resp.status}", status=resp.status)
                if resp.status >= 400:
                    raise PermanentDeliveryError(f"HTTP {resp.status}", status=resp.status)
        except OSError as exc:
            raise RetryableDeliveryError(f"connection failed: {exc}") from None

    async def close(self) -> None:
        await self._session.close()
