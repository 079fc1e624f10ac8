"""The InfluxDB sink: alert events (and any other :class:`Point`) as line protocol.

Two transports, chosen by :attr:`cityeye.config.InfluxSettings.api`:

* ``v2`` -- influxdb-client's async write API (``/api/v2/write``): InfluxDB
  2.x and 3.x, and 1.8+ through its v2 compatibility endpoint (bucket
  ``database/retention``, token ``username:password``; when no token is set
  and a username is, that token is built from them);
* ``v1`` -- the 1.x ``/write`` HTTP API with ``db``, ``rp``,
  ``precision=n`` and HTTP basic auth (so the password is never in a URL).

:func:`alert_event_point` maps a :class:`~cityeye.contracts.AlertEvent` onto
measurement ``alert_events`` (tags sensor, district, rule, severity, state,
kind; fields value, threshold, message, alert_id, event_id; time =
``updated_at``, to the microsecond, in ns). A point is identified by
measurement + tags + time, so writing the same event twice stores it once:
the consumer may redeliver.

Other writers (the lifecycle's ``alert_history``) build :class:`Point` s and
either :meth:`InfluxSink.add` them or call :meth:`InfluxSink.write_points`.

A batch the server refuses as malformed (400) is split and written point
by point, so only the bad points come back as :class:`Rejected`; every
other failure (refused connection, timeout, 5xx, 401/403, missing database)
raises :class:`SinkWriteError` and keeps the batch for a retry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterable, Union

import aiohttp

from alerts.sinks.base import BaseSink, Rejected, SinkWriteError
from alerts.sinks.line_protocol import Point
from cityeye.config import InfluxSettings
from cityeye.contracts import AlertEvent

__all__ = ["InfluxSink", "InfluxRejectedError", "alert_event_point", "ALERT_EVENTS_MEASUREMENT"]

log = logging.getLogger(__name__)

ALERT_EVENTS_MEASUREMENT = "alert_events"

SinkItem = Union[Point, AlertEvent]


class InfluxRejectedError(Exception):
    """The server refused the payload as malformed (HTTP 400 and similar)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"InfluxDB refused the write (HTTP {status}): {detail[:300]}")
        self.status = status


def alert_event_point(event: AlertEvent) -> Point:
    """The ``alert_events`` point of ``event``."""
    return Point(
        measurement=ALERT_EVENTS_MEASUREMENT,
        tags={
            "sensor": event.sensor_id,
            "district": event.district,
            "rule": event.rule,
            "severity": event.severity,
            "state": event.state,
            "kind": event.kind,
        },
        fields={
            "value": None if event.value is None else float(event.value),
            "threshold": None if event.threshold is None else float(event.threshold),
            "message": event.message,
            "alert_id": event.alert_id,
            "event_id": event.event_id,
        },
        # microseconds first: a float's error at ns scale would show as ...999808
        time_ns=round(event.updated_at * 1_000_000) * 1000,
    )


def _as_point(item: SinkItem) -> Point:
    return alert_event_point(item) if isinstance(item, AlertEvent) else item


class _V1Transport:
    """POST line protocol to a 1.x ``/write``."""

    def __init__(self, settings: InfluxSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def post(self, body: bytes) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        s = self.settings
        params = {"db": s.database, "precision": "n"}
        if s.retention_policy:
            params["rp"] = s.retention_policy
        auth = None
        if s.username:
            auth = aiohttp.BasicAuth(s.username, s.password.get_secret_value() if s.password else "")
        async with self.session.post(f"{s.url.rstrip('/')}/write", params=params, data=body, auth=auth,
                                     headers={"Content-Type": "text/plain; charset=utf-8"}) as resp:
            if resp.status in (200, 204):
                return
            detail = (await resp.text())[:300]
            _raise_for_status(resp.status, detail)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


class _V2Transport:
    """influxdb-client's async write API (``/api/v2/write``)."""

    def __init__(self, settings: InfluxSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_ms = int(timeout_s * 1000)
        self.client = None

    def _token(self) -> str:
        s = self.settings
        if s.token is not None:
            return s.token.get_secret_value()
        if s.username:
            return f"{s.username}:{s.password.get_secret_value() if s.password else ''}"
        return ""

    async def post(self, body: bytes) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        if self.client is None:
            self.client = InfluxDBClientAsync(url=self.settings.url, token=self._token(),
                                              org=self.settings.org, timeout=self.timeout_ms)
        try:
            await self.client.write_api().write(bucket=self.settings.bucket, org=self.settings.org,
                                                record=body, write_precision=WritePrecision.NS)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None) or (exc.response.status if exc.response is not None else 0)
            _raise_for_status(int(status or 0), str(getattr(exc, "message", "") or "")[:300])

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


def _raise_for_status(status: int, detail: str) -> None:
    if status in (400, 413, 422):
        raise InfluxRejectedError(status, detail)
    hint = {401: "unauthorised: check the token/credentials", 403: "forbidden: check the token's permissions",
            404: "database/bucket not found"}.get(status, "server error")
    raise SinkWriteError(f"InfluxDB write failed (HTTP {status}, {hint}): {detail}")


class InfluxSink(BaseSink[SinkItem]):
    """Writes :class:`Point` s and :class:`AlertEvent` s to InfluxDB in batches.

    ``InfluxSink(settings)`` takes the batch size and flush interval from
    ``settings``; ``timeout_s`` bounds each HTTP request.
    """

    name = "influx"

    def __init__(self, settings: InfluxSettings, *, timeout_s: float = 10.0) -> None:
        super().__init__(settings.batch_size, settings.flush_interval_s)
        self.settings = settings
        transport = _V2Transport if settings.api == "v2" else _V1Transport
        self._transport = transport(settings, timeout_s)

    def describe(self) -> dict[str, str]:
        s = self.settings
        target = s.bucket if s.api == "v2" else s.database
        return {"sink": self.name, "api": s.api, "url": s.url, "target": target}

    async def write_points(self, points: Iterable[SinkItem]) -> list[Rejected[SinkItem]]:
        """Write ``points`` now, without the buffer (same outcome rules as :meth:`flush`)."""
        return await self.write(list(points))

    async def write(self, batch: list[SinkItem]) -> list[Rejected[SinkItem]]:
        rejected: list[Rejected[SinkItem]] = []
        lines: list[tuple[SinkItem, str]] = []
        for item in batch:
            try:
                lines.append((item, _as_point(item).to_line()))
            except (ValueError, TypeError) as exc:
                rejected.append(Rejected(item, f"not writable as line protocol: {exc}"))
        if not lines:
            return rejected
        try:
            await self._post([line for _, line in lines])
        except InfluxRejectedError as exc:
            if len(lines) == 1:
                return rejected + [Rejected(lines[0][0], str(exc), exc.status)]
            log.warning("InfluxDB refused a batch of %d points (%s); writing them one by one", len(lines), exc)
            for item, line in lines:
                try:
                    await self._post([line])
                except InfluxRejectedError as one:
                    rejected.append(Rejected(item, str(one), one.status))
        return rejected

    async def _post(self, lines: list[str]) -> None:
        body = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            await self._transport.post(body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reason = type(exc).__name__ if isinstance(exc, asyncio.TimeoutError) else str(exc)[:200]
            raise SinkWriteError(f"InfluxDB at {self.settings.url} unreachable: {reason}") from None

    async def close(self) -> None:
        await self._transport.close()
