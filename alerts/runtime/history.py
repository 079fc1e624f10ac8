"""Alert history in InfluxDB: every transition as one point of ``alert_history``.

Tags: ``alert_id, sensor, district, kind, rule, severity, action, receiver``;
fields: ``actor, detail, attempt, status``. "What happened on gauge X
last night" is then one query::

    SELECT * FROM alert_history WHERE sensor = 'wl-pd-001'
      AND time >= '2026-07-01T14:00:00Z' AND time < '2026-07-01T22:00:00Z'

Records are first written to the store's ``history_outbox`` in the same
transaction as the state change, then shipped by :class:`HistoryShipper`
in batches and deleted once InfluxDB acknowledged them: a restart loses
no history, and a failed write is retried.

Writes go through the shared :class:`alerts.sinks.influx.InfluxSink` (v1
``/write`` or v2 API as configured); points InfluxDB refuses for good are
dead-lettered in the store, anything else is retried.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import time

import aiohttp

from alerts.sinks.base import SinkWriteError
from alerts.sinks.influx import InfluxSink
from alerts.sinks.line_protocol import Point
from alerts.runtime.store import Store
from cityeye.config import InfluxSettings

__all__ = ["MEASUREMENT", "TAGS", "to_point", "to_points", "HistoryShipper", "query_history"]

log = logging.getLogger(__name__)

MEASUREMENT = "alert_history"
TAGS = ("alert_id", "sensor", "district", "kind", "rule", "severity", "action", "receiver")


def to_point(r: dict[str, Any], time_ns: int) -> Point:
    return Point(MEASUREMENT, tags={k: str(r[k]) for k in TAGS if r.get(k)},
                 fields={"actor": str(r["actor"]), "detail": str(r["detail"]), "attempt": int(r["attempt"]),
                         "status": str(r["status"])}, time_ns=time_ns)


def to_points(records: list[dict[str, Any]]) -> list[Point]:
    """Points with nanosecond timestamps made strictly increasing within the batch.

    A point is identified by measurement + tags + time, so two records with
    the same tags in the same nanosecond would overwrite each other.
    """
    out, last = [], 0
    for r in records:
        ns = max(int(r["ts"] * 1e9), last + 1)
        last = ns
        out.append(to_point(r, ns))
    return out


class HistoryShipper:
    """Moves history records from the store's outbox to InfluxDB through :class:`InfluxSink`."""

    def __init__(self, store: Store, sink: InfluxSink, batch_size: int = 500) -> None:
        self.store, self.sink, self.batch_size = store, sink, batch_size
        self.wake = asyncio.Event()

    async def ship_once(self) -> int:
        """Write one batch; returns how many records left the outbox."""
        batch = self.store.history_batch(self.batch_size)
        if not batch:
            return 0
        records = [r for _, r in batch]
        rejected = await self.sink.write_points(to_points(records))
        with self.store.transaction():
            for rej in rejected:
                self.store.add_deadletter("history", rej.reason, {"line": rej.item.to_line()}, time.time())
            self.store.history_done(batch[-1][0])
        return len(batch)

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        failures = 0
        while not stop.is_set():
            try:
                while await self.ship_once() >= self.batch_size:
                    pass
                failures = 0
            except SinkWriteError as exc:
                failures += 1
                log.warning("alert history not written yet (will retry): %s", exc)
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(30.0, interval_s * (1 + failures)))
            except asyncio.TimeoutError:
                pass
        try:
            await self.ship_once()
        except SinkWriteError as exc:
            log.warning("alert history kept in the store for the next start: %s", exc)
        await self.sink.close()


async def query_history(influx: InfluxSettings, sensor: str, start: str | None = None,
                        end: str | None = None) -> list[dict[str, Any]]:
    """The history of ``sensor`` (v1 ``/query``, InfluxQL), oldest first, as dicts."""
    q = f"SELECT * FROM {MEASUREMENT} WHERE sensor = '{sensor.replace(chr(39), '')}'"
    if start:
        q += f" AND time >= '{start}'"
    if end:
        q += f" AND time < '{end}'"
    params = {"db": influx.database, "q": q}
    if influx.username:
        params["u"] = influx.username
        params["p"] = influx.password.get_secret_value() if influx.password else ""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{influx.url.rstrip('/')}/query", params=params) as resp:
            data = await resp.json()
    out: list[dict[str, Any]] = []
    for result in data.get("results", []):
        for series in result.get("series", []):
            cols = series["columns"]
            out += [dict(zip(cols, row)) for row in series["values"]]
    return out
