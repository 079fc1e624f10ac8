"""The snapshot table: each sensor's detector state, backed by a changelog.

The worker keeps detector state in plain dicts (fast) and copies a sensor's
state here only now and then (streams/snapshot_writer.py), writing the changelog
record itself with the partition of the sensor's readings: the writes happen
in batches, on clock ticks and on revocation, i.e. outside the per-event
context Faust's ``table[key] = value`` relies on to pick the partition.

Values are JSON objects (:meth:`streams.sensor_engine.SensorEngine.snapshot` plus
``topic``/``partition`` of the sensor's readings), keys the sensor ids.
Recovery replays the changelog into memory (``store="memory://"``) when
partitions are assigned.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Iterator

import faust
from faust.types import TP

__all__ = ["SNAPSHOT_TABLE", "SnapshotTable", "define_snapshot_table", "clear_snapshot_position"]

SNAPSHOT_TABLE = "sensor-snapshots"


class SnapshotTable:
    """Writes and reads sensor snapshots of one Faust table."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self.writes = 0

    def keep(self, tp: TP, sensor_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Store ``snapshot`` of a sensor of readings partition ``tp`` locally; the value :meth:`send` takes."""
        value = {**snapshot, "topic": tp.topic, "partition": tp.partition}
        self.table.data[sensor_id] = value
        return value

    async def send(self, sensor_id: str, value: dict[str, Any]) -> Awaitable[Any]:
        """Send a kept value to changelog partition ``value["partition"]``; awaiting the result awaits the broker.

        Sent with the producer directly (``await topic.send``), not through
        Faust's ``send_soon`` buffer, so a burst of snapshots (every sensor's
        first one, a revocation) is paced by the producer instead of
        overflowing that buffer.
        """
        sent = await self.table.changelog_topic.send(
            key=sensor_id, value=value, partition=value["partition"],
            key_serializer=self.table.key_serializer, value_serializer=self.table.value_serializer,
        )
        self.writes += 1
        return sent

    def get(self, sensor_id: str) -> dict[str, Any] | None:
        value = self.table.data.get(sensor_id)
        return value if isinstance(value, dict) else None

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key, value in list(self.table.data.items()):
            if isinstance(value, dict):
                yield key, value


def define_snapshot_table(app: faust.App, partitions: int) -> SnapshotTable:
    table = app.Table(
        SNAPSHOT_TABLE,
        default=None,
        partitions=partitions,
        schema=faust.Schema(key_type=str, value_type=None, key_serializer="raw", value_serializer="json"),
    )
    return SnapshotTable(table)


def clear_snapshot_position(value: bytes | None) -> bytes | None:
    """A snapshot changelog value (JSON) valid on another broker: its readings ``position`` cleared.

    The position is an offset of the readings topic of the broker the
    snapshot was taken on (streams/sensor_engine.py); on a new broker offsets
    start again and every reading there comes after the snapshot (broker
    rollover, launch/broker_rollover.py). Values that are not JSON objects
    with a position pass unchanged.
    """
    if value is None:
        return None
    try:
        snapshot = json.loads(value)
    except ValueError:
        return value
    if not isinstance(snapshot, dict) or "position" not in snapshot:
        return value
    return json.dumps({**snapshot, "position": None}, separators=(",", ":")).encode()
