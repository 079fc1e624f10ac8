"""Backtest data from servers: a time range of Kafka ``readings.*`` topics, an InfluxDB query.

* :func:`from_kafka` reads the readings whose time is in ``[start, end)``
  from ``readings.<kind>`` topics without a consumer group (nothing is
  committed, nothing is written): each partition is positioned with
  ListOffsets-by-timestamp (``offsets_for_times``) a margin before
  ``start`` -- record timestamps are the gateway's clock, readings carry the
  device's -- and read to its end offset as of the start of the read; the
  readings' own ``ts`` decides what is kept. Records that are not readings
  are counted and skipped.
* :func:`from_influx` runs an InfluxQL query over the 1.x HTTP API
  (``/query``; InfluxDB 2.x serves it too through its DBRP mapping). Each
  returned series is one sensor: its id comes from the tag ``sensor_tag``
  (``GROUP BY sensor_id``), its columns are the fields; ``time`` is read as
  epoch seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aiokafka.structs import TopicPartition

from cityeye.config import InfluxSettings, KafkaSettings
from cityeye.contracts import Reading, readings_topic
from cityeye.kafka import make_consumer
from cityeye.reading_records import readings_of
from cityeye.sensor_registry import SensorRegistry
from evaluation.backtest.data import DataError, Dataset

__all__ = ["from_kafka", "from_influx", "KAFKA_MARGIN_S"]

#: how far before ``start`` (by record timestamp) partitions are read, for devices whose clocks lag the gateway's
KAFKA_MARGIN_S = 3600.0


async def from_kafka(kafka: KafkaSettings, registry: SensorRegistry, kinds: list[str], start: float, end: float,
                     dataset: Dataset | None = None) -> Dataset:
    """The readings of ``kinds`` with ``start <= ts < end`` from ``readings.<kind>``."""
    ds = dataset or Dataset(registry, source=f"kafka {', '.join(readings_topic(k) for k in kinds)}")
    consumer = make_consumer(kafka, group=None, enable_auto_commit=False)
    await consumer.start()
    skipped = 0
    try:
        tps = [TopicPartition(readings_topic(k), p) for k in kinds
               for p in sorted(consumer.partitions_for_topic(readings_topic(k)) or [])]
        if not tps:
            raise DataError(f"no partitions for {', '.join(readings_topic(k) for k in kinds)} on {kafka.bootstrap}")
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        firsts = await consumer.beginning_offsets(tps)
        found = await consumer.offsets_for_times({tp: int((start - KAFKA_MARGIN_S) * 1000) for tp in tps})
        todo = {}
        for tp in tps:
            at = found.get(tp)
            first = at.offset if at is not None else ends[tp]
            if first < ends[tp]:
                consumer.seek(tp, max(first, firsts[tp]))
                todo[tp] = ends[tp]
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000, max_records=10000)
            if not batch:
                break
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= todo.get(tp, 0):
                        break
                    for item in readings_of(rec.value, rec.key, rec.headers):  # single or aggregated records
                        if type(item) is not Reading:
                            skipped += 1
                        elif start <= item.ts < end and registry.get(item.sensor_id) is not None:
                            ds.add(item)
                if records and records[-1].offset >= todo.get(tp, 0) - 1:
                    todo.pop(tp, None)
    finally:
        await consumer.stop()
    if skipped:
        ds.source += f" ({skipped} records that are not readings skipped)"
    return ds.sort()


def _get(url: str, params: dict[str, str], auth: tuple[str, str] | None) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}/query?{urllib.parse.urlencode(params)}")
    if auth is not None:
        import base64

        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            reason = json.load(exc).get("error") or f"HTTP {exc.code}"
        except ValueError:
            reason = f"HTTP {exc.code}"
        raise DataError(f"InfluxDB: {reason}") from None
    except OSError as exc:
        raise DataError(f"InfluxDB {url} cannot be reached: {exc}") from None


def from_influx(influx: InfluxSettings, registry: SensorRegistry, query: str, sensor_tag: str = "sensor_id",
                dataset: Dataset | None = None) -> Dataset:
    """Readings from an InfluxQL query grouped by the sensor tag (see the module docstring)."""
    ds = dataset or Dataset(registry, source=f"influxdb {influx.database}: {query}")
    auth = None
    if influx.username:
        auth = (influx.username, influx.password.get_secret_value() if influx.password else "")
    body = _get(influx.url.rstrip("/"), {"db": influx.database, "q": query, "epoch": "s"}, auth)
    for result in body.get("results", []):
        if "error" in result:
            raise DataError(f"InfluxDB: {result['error']}")
        for series in result.get("series", []):
            sid = (series.get("tags") or {}).get(sensor_tag)
            sensor = registry.get(sid) if sid else None
            if sensor is None:
                raise DataError(f"InfluxDB series {series.get('name')} {series.get('tags')}: no sensor in the "
                                f"registry for tag {sensor_tag!r} (GROUP BY {sensor_tag})")
            columns = series["columns"]
            for row in series.get("values", []):
                values = {c: float(v) for c, v in zip(columns, row) if c != "time" and isinstance(v, (int, float))
                          and not isinstance(v, bool)}
                if values:
                    t = float(row[columns.index("time")])
                    ds.add(Reading(sensor.id, sensor.kind, sensor.district, t, values, t, ""))
    return ds.sort()
