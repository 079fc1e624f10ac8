"""Switching between one dispatcher and several workers without replaying ``alerts.events``.

One dispatcher reads ``alerts.events`` in consumer group ``<prefix>-dispatcher``;
several workers read it in ``<prefix>-dispatcher-router`` (alerts/sharding.py).
When the mode changes, the group now reading has no (or an old) committed
offset and would start from the oldest retained event, re-raising alerts the
other mode already handled and closed. :class:`ResumeAfterOtherGroup`, a
rebalance listener, moves each newly assigned partition to the other
group's committed offset when that is further on, so the new mode resumes
where the old one stopped. (The state files must have drained first; see
``pending_work`` in alerts/store.py.)
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import ConsumerRebalanceListener
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

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        tps = sorted(assigned)
        if not tps:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.bootstrap,
                                    client_id=f"{self.kafka.client_id_prefix}-handover")
        try:
            await admin.start()
            # partitions listed explicitly (Tansu breaks the connection without them)
            other = await admin.list_consumer_group_offsets(self.other, partitions=tps)
        except KafkaError as exc:  # nothing to resume from: the group's own offsets apply
            log.warning("offsets of consumer group %s not read (%s); starting from this group's own", self.other, exc)
            return
        finally:
            await admin.close()
        for tp in tps:
            theirs = other.get(tp)
            if theirs is None or theirs.offset is None or theirs.offset < 0:
                continue
            own = await self.consumer.committed(tp)
            if own is None or own < theirs.offset:
                log.info("%s[%d]: resuming at offset %d where consumer group %s stopped (own: %s)",
                         tp.topic, tp.partition, theirs.offset, self.other, own)
                self.consumer.seek(tp, theirs.offset)
