"""``GET /api/v1/devices`` and ``GET /api/v1/devices/{id}``: device health for the console.

Each device's latest health record as the gateway reported it
(:class:`cityeye.device_health.DeviceHealth`), plus ``age_s``: seconds since
the record was published (a large age means the gateway stopped reporting).
Filters: ``district``, ``kind``, ``status``; ``status`` is derived here, and
the list is sorted by it (most urgent first), then by sensor id:

* ``silent`` -- never seen, or nothing for more than ``silent_after_s``;
* ``rate_limited`` -- dead letters in the last interval, the latest for the rate limit;
* ``rejecting`` -- dead letters in the last interval and no reading since the latest;
* ``ok`` -- otherwise.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from alerts.runtime.device_health import DeviceHealthView
from cityeye.device_health import DeviceHealth

__all__ = ["DEVICE_STATUSES", "add_device_routes", "device_status"]

#: most urgent first: the order of the list
DEVICE_STATUSES = ("rejecting", "rate_limited", "silent", "ok")


def device_status(h: DeviceHealth, now: float, silent_after_s: float) -> str:
    """What the console shows first for a device (see the module docstring)."""
    if h.last_seen is None or now - h.last_seen > silent_after_s:
        return "silent"
    if h.dead_letter_rate_per_s > 0:
        if (h.last_reason or "").startswith("rate_limited"):
            return "rate_limited"
        if (h.last_reading_at or 0) < (h.last_reason_at or 0):
            return "rejecting"
    return "ok"


def add_device_routes(app: web.Application, view: DeviceHealthView, clock: Callable[[], float],
                      silent_after_s: float = 600.0) -> None:
    """Register the two device routes on ``app`` (its error middleware turns the HTTP errors raised
    here into the API's ``{"error": ...}`` shape)."""

    def to_api(h: DeviceHealth, now: float) -> dict:
        return {**h.to_api(), "status": device_status(h, now, silent_after_s), "age_s": round(now - h.updated_at, 1)}

    async def list_devices(request: web.Request) -> web.Response:
        now, q = clock(), request.query
        if q.get("status") and q["status"] not in DEVICE_STATUSES:
            raise web.HTTPUnprocessableEntity(reason=f"status: one of {', '.join(DEVICE_STATUSES)}")
        out = [to_api(h, now) for h in view.devices.values()
               if all(not q.get(k) or getattr(h, k) == q[k] for k in ("district", "kind"))]
        out = [d for d in out if not q.get("status") or d["status"] == q["status"]]
        out.sort(key=lambda d: (DEVICE_STATUSES.index(d["status"]), d["sensor_id"]))
        return web.json_response({"devices": out, "total": len(out)})

    async def get_device(request: web.Request) -> web.Response:
        health = view.get(request.match_info["id"])
        if health is None:
            raise web.HTTPNotFound(reason=f"no health record for device {request.match_info['id'][:64]!r}")
        return web.json_response(to_api(health, clock()))

    app.router.add_get("/api/v1/devices", list_devices)
    app.router.add_get("/api/v1/devices/{id}", get_device)
