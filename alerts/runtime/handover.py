"""Switching between one dispatcher and several workers without replaying ``alerts.events``.

One dispatcher reads ``alerts.events`` in consumer group ``<prefix>-dispatcher``;
several workers read it in ``<prefix>-dispatcher-router`` (alerts/runtime/sharding.py).
When the mode changes, the group now reading has no (or an old) committed
offset and would start from the oldest retained event, re-raising alerts the
other mode already handled and closed. :class:`ResumeAfterOtherGroup`, a
rebalance listener, moves each newly assigned partition to the other
group's committed offset when that is further on, so the new mode resumes
where the old one stopped. (The state files must have drained first; see
``pending_work`` in alerts/runtime/store.py.)

aiokafka may fetch a newly assigned partition while the listener still
waits for the offsets, so the consume loop passes every batch through
:meth:`ResumeAfterOtherGroup.admit`: records of a partition not settled yet
are read again later, records before the resume point are dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from cityeye.config import KafkaSettings

__all__ = ["ResumeAfterOtherGroup"]

log = logging.getLogger(__name__)


class ResumeAfterOtherGroup(ConsumerRebalanceListener):
    """Start assigned partitions at ``max(own committed, other group's committed)`` offset."""

    def __init__(self, consumer: Any, kafka: KafkaSettings, other_group: str) -> None:
        self.consumer, self.kafka = consumer, kafka
        self.other = f"{kafka.consumer_group_prefix}-{other_group}"
        #: first offset to process per settled partition
        self.start: dict[TopicPartition, int] = {}

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.start.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        tps = sorted(assigned)
        if not tps:
            return
        other = await self._other_offsets(tps)
        start = {}
        for tp in tps:
            theirs = other.get(tp)
            theirs = theirs.offset if theirs is not None and theirs.offset is not None else -1
            own = await self.consumer.committed(tp)
            start[tp] = theirs if theirs > 0 and (own is None or own < theirs) else 0
            if start[tp]:
                log.info("%s[%d]: resuming at offset %d where consumer group %s stopped (own: %s)",
                         tp.topic, tp.partition, theirs, self.other, own)
        for tp, offset in start.items():  # no await from here on: settled as one step
            if offset and tp in self.consumer.assignment():
                self.consumer.seek(tp, offset)
        self.start.update(start)

    async def _other_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, Any]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap,
                                    client_id=f"{self.kafka.client_id_prefix}-handover")
        try:
            await admin.start()
            # partitions listed explicitly (Tansu breaks the connection without them)
            return await admin.list_consumer_group_offsets(self.other, partitions=tps)
        except KafkaError as exc:  # nothing to resume from: the group's own offsets apply
            log.warning("offsets of consumer group %s not read (%s); starting from this group's own", self.other, exc)
            return {}
        finally:
            await admin.close()

    def admit(self, batches: dict[TopicPartition, list[Any]]) -> dict[TopicPartition, list[Any]]:
        """The records to process: settled partitions only, from their resume point on."""
        out = {}
        for tp, records in batches.items():
            start = self.start.get(tp)
            if start is None:  # assignment not settled yet: read these again afterwards
                if records and tp in self.consumer.assignment():
                    self.consumer.seek(tp, records[0].offset)
                continue
            kept = [r for r in records if r.offset >= start]
            if kept:
                out[tp] = kept
        return out
