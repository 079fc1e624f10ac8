"""Kafka helpers shared by every stage: topic creation and client factories.

Only the plain Kafka protocol is used (aiokafka); broker-specific tuning
comes from :class:`cityeye.config.KafkaSettings`.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from cityeye.config import KafkaSettings
from cityeye.contracts import all_topics

__all__ = ["ensure_topics", "make_producer", "make_consumer"]

log = logging.getLogger(__name__)


async def ensure_topics(kafka: KafkaSettings, topics: dict[str, int] | None = None, timeout: float = 30.0) -> None:
    """Create ``topics`` (name -> partitions; default: all CityEye topics) if missing.

    Topics are always pre-created with their partition counts: auto-created
    topics would get the broker's default count and break co-partitioning.
    """
    topics = topics or all_topics()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, client_id=f"{kafka.client_id_prefix}-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
                log.info("created Kafka topics: %s", ", ".join(t.name for t in missing))
            return
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


def make_producer(kafka: KafkaSettings, name: str, **overrides) -> AIOKafkaProducer:
    kw = kafka.producer_kwargs()
    kw.update(overrides)
    return AIOKafkaProducer(client_id=f"{kafka.client_id_prefix}-{name}", **kw)


def make_consumer(kafka: KafkaSettings, *topics: str, group: str | None, **overrides) -> AIOKafkaConsumer:
    kw = kafka.consumer_kwargs()
    kw.update(overrides)
    group_id = f"{kafka.consumer_group_prefix}-{group}" if group else None
    return AIOKafkaConsumer(*topics, group_id=group_id, client_id=f"{kafka.client_id_prefix}-{group or 'reader'}", **kw)
