"""Shared helpers for the alerting tests: the one AlertEvent factory, configs, the one fake HTTP receiver.

* :func:`event` -- every test ``AlertEvent`` is made here (the sinks' numbered
  series, ``tests.sink_helpers.make_event``, is a preset of it).
* :func:`config` -- an :class:`~alerts.config.AlertingConfig` with fast timings.
* :func:`recorded_flood` -- a flood's alert events as a stream worker raised them from
  recorded data (event times 15 minutes apart), for replays on event time.
* :class:`Receiver` -- a real aiohttp server on a free loopback port that
  answers a script of statuses and records every request; it serves the
  notifier, sink and dispatcher tests alike. :func:`receiver_in_thread` runs
  one on its own event loop for synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator

from aiohttp import web

from alerts.config import AlertingConfig, parse_alerting_config
from cityeye.contracts import AlertEvent, alert_id_for
from tests.kafka_helpers import wait_until

__all__ = ["event", "config", "recorded_flood", "Receiver", "ReceivedRequest", "receiver_in_thread"]


def event(sensor: str, state: str = "firing", severity: str = "orange", *, rule: str = "level_warning",
          district: str = "pudong", kind: str = "water_level", started_at: float = 1000.0, updated_at: float = 1000.0,
          value: float | None = 5.0, threshold: float | None = 4.0, message: str | None = None,
          alert_id: str | None = None, labels: dict[str, str] | None = None, **more_labels: str) -> AlertEvent:
    """An alert event of ``sensor``; the alert id is the episode's (sensor, rule, start) unless given.

    Its labels are ``labels`` and any further keywords (``sensor_name="..."``).
    """
    return AlertEvent(alert_id=alert_id or alert_id_for(sensor, rule, started_at), sensor_id=sensor, kind=kind,
                      district=district, rule=rule, severity=severity, state=state, started_at=started_at,
                      updated_at=updated_at, value=value, threshold=threshold,
                      message=message if message is not None else f"{sensor} {state} {severity}",
                      labels={**(labels or {}), **more_labels})


def recorded_flood(sensor: str, t0: float, step: float = 900.0) -> list[AlertEvent]:
    """A gauge's flood as recorded: the level hovers about the warning level, then rises past the guaranteed one.

    Yellow fires at ``t0`` and resolves a reading later, fires again (a new
    episode) and resolves, fires a third time and, another reading later,
    escalates to orange: six events ``step`` seconds apart in event time.
    """
    rule = "water_level.warning"
    t = [t0 + i * step for i in range(6)]
    return [event(sensor, "firing", "yellow", rule=rule, started_at=t[0], updated_at=t[0]),
            event(sensor, "resolved", "yellow", rule=rule, started_at=t[0], updated_at=t[1]),
            event(sensor, "firing", "yellow", rule=rule, started_at=t[2], updated_at=t[2]),
            event(sensor, "resolved", "yellow", rule=rule, started_at=t[2], updated_at=t[3]),
            event(sensor, "firing", "yellow", rule=rule, started_at=t[4], updated_at=t[4]),
            event(sensor, "firing", "orange", rule=rule, started_at=t[4], updated_at=t[5])]


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
class ReceivedRequest:
    """One POST as the receiver saw it, and the status it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def key(self) -> str:
        """The Idempotency-Key header, else a CAP message's identifier."""
        ident = re.search(rb"<identifier>([^<]+)</identifier>", self.body)
        return self.headers.get("Idempotency-Key", ident.group(1).decode() if ident else "")

    @cached_property
    def notification(self) -> dict[str, Any]:
        """The JSON body (a CAP message as ``reason``/``msgType``/``xml``), with ``_path`` its name."""
        if "xml" in self.headers.get("Content-Type", ""):
            text = self.body.decode()
            msg_type = re.search(r"<msgType>(\w+)</msgType>", text)
            body = {"reason": "cap", "msgType": msg_type.group(1) if msg_type else "", "xml": text}
        else:
            body = json.loads(self.body)
        return {**body, "_path": self.path.lstrip("/")}


@dataclass
class Receiver:
    """A real aiohttp server on a free loopback port answering a script; every POST is recorded.

    ``script`` items are a status, ``(status, headers)``, or a float: sleep
    that many seconds, then 200; once used up every request gets
    ``default``. Start with ``async with Receiver() as rx`` or
    ``await Receiver().start()`` / ``stop()``; :meth:`url` names a path.

    Views for the dispatcher tests: ``keys`` (every request's idempotency
    key), ``delivered_keys`` (the 2xx-answered ones), ``received`` (the
    notification of each key's first delivery: a duplicate is not counted
    twice), :meth:`to`, :meth:`reasons`.
    """

    script: list = field(default_factory=list)
    default: int = 200
    requests: list[ReceivedRequest] = field(default_factory=list)
    port: int = 0

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/{name:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> "Receiver":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        step = self.script.pop(0) if self.script else self.default
        status, headers = step if isinstance(step, tuple) else (200 if isinstance(step, float) else step, {})
        self.requests.append(ReceivedRequest(request.path, dict(request.headers), body, status))
        if isinstance(step, float):
            await asyncio.sleep(step)
        return web.json_response({"ok": status < 300}, status=status, headers=headers)

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.requests]

    @property
    def delivered_keys(self) -> list[str]:
        return [r.key for r in self.requests if r.status < 300]

    @property
    def received(self) -> list[dict[str, Any]]:
        first: dict[str, ReceivedRequest] = {}
        for r in self.requests:
            if r.status < 300:
                first.setdefault(r.key, r)
        return [r.notification for r in first.values()]

    def distinct_delivered(self) -> int:
        return len(set(self.delivered_keys))

    def reasons(self, path: str | None = None) -> Counter:
        return Counter(n["reason"] for n in self.received if path is None or n["_path"] == path)

    def to(self, path: str) -> list[dict[str, Any]]:
        return [n for n in self.received if n["_path"] == path]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        if not await wait_until(predicate, timeout, every=0.02):
            raise AssertionError(f"receiver condition not met; got {[n['reason'] for n in self.received]}")


@contextlib.contextmanager
def receiver_in_thread(**fields: Any) -> Iterator[Receiver]:
    """A :class:`Receiver` served by an event loop of its own, for tests without one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-receiver", daemon=True)
    thread.start()
    try:
        rx = asyncio.run_coroutine_threadsafe(Receiver(**fields).start(), loop).result(10)
        try:
            yield rx
        finally:
            asyncio.run_coroutine_threadsafe(rx.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
