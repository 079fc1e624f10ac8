"""Re-reading the readings a crash left out of the last snapshots: where to start.

After a crash the consumer group resumes at its committed offsets, but a
sensor's snapshot may be older: readings between the snapshot's position and
the committed offset were processed (and their alert events sent) yet are
in no snapshot. :func:`committed_offsets` says where the group resumes;
:func:`cityeye.kafka.read_ranges` reads exactly those offset ranges with a
plain aiokafka consumer (no group), so the worker can feed them to the
engine again, discarding the events they produce, before its stream starts.
"""

from __future__ import annotations

import logging
from typing import Iterable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from cityeye.config import KafkaSettings

__all__ = ["committed_offsets"]

log = logging.getLogger(__name__)


async def committed_offsets(kafka: KafkaSettings, group_id: str, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offset per partition (partitions without one are left out).

    Partitions are always named explicitly (some brokers drop the connection
    on an OffsetFetch for all partitions).
    """
    wanted = [TopicPartition(t, p) for t, p in tps]
    if not wanted:
        return {}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id=f"{kafka.client_id_prefix}-replay-admin")
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group_id, partitions=wanted)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in got.items() if meta is not None and meta.offset >= 0}
