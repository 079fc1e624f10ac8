"""Starting over a state directory: adopt the former single dispatcher, never strand state.

Before the one topology (alerts/dispatcher.py) a single dispatcher
read ``alerts.events`` in consumer group ``<prefix>-dispatcher`` into
``<state_dir>/dispatcher.sqlite``. A dispatcher started over such a
directory upgrades it in place:

* :func:`prepare_state_dir` adopts ``dispatcher.sqlite`` as the state file
  of the unsharded partition (``dispatcher-p0.sqlite``) when
  ``sharding.key`` is ``none`` and that file does not exist yet (checkpointed,
  then renamed under the partition's lock), so its active alerts, groups,
  silences and unsent notifications carry on. It refuses to start, naming
  the file, whenever the configuration would strand state: a shard key with
  an unadopted ``dispatcher.sqlite`` that still holds work, ``none`` with
  work in another partition's file, or a changed ``sharding.key`` (recorded
  in ``dispatcher-sharding.key``) while any partition holds work.
* :class:`ResumeAfterOtherGroup`, the router's rebalance listener, moves
  each newly assigned ``alerts.events`` partition to the former group's
  committed offset when that is further on, so the upgrade does not replay
  ``alerts.events`` from the oldest retained event.

aiokafka may fetch a newly assigned partition while the listener still
waits for the offsets, so the router passes every batch through
:meth:`ResumeAfterOtherGroup.admit`: records of a partition not settled yet
are read again later, records before the resume point are dropped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from alerts.runtime.store import pending_work, state_path
from cityeye.config import KafkaSettings
from cityeye.errors import ConfigError

__all__ = ["ResumeAfterOtherGroup", "FORMER_GROUP", "prepare_state_dir", "KEY_FILE"]

log = logging.getLogger(__name__)

#: consumer group of the former single dispatcher on alerts.events (now the partition consumer's, on alerts.grouped)
FORMER_GROUP = "dispatcher"
#: the sharding key the state files were written under
KEY_FILE = "dispatcher-sharding.key"


def prepare_state_dir(state_dir: str | Path, key: str, unsharded: str, unsharded_partition: int,
                      partitions: int) -> None:
    """Adopt a former single dispatcher's file, refuse a start that would strand state, record ``key``.

    Raises :class:`~cityeye.errors.ConfigError` naming the file and what to do.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    single = state_path(state_dir)
    files = {p: state_path(state_dir, p) for p in range(partitions)}
    if key == unsharded and single.exists() and not files[unsharded_partition].exists():
        _adopt(single, files[unsharded_partition], state_dir / f"dispatcher-p{unsharded_partition}.lock")
    pending = pending_work(single)
    if pending:
        todo = ("not adopted because " + files[unsharded_partition].name + " exists already; move one of them away"
                if key == unsharded else "run with sharding disabled until it has drained, then enable sharding")
        raise ConfigError(f"{single} holds a single dispatcher's state ({pending} active alert(s) or unsent "
                          f"notification(s)); {todo}")
    key_file = state_dir / KEY_FILE
    before = key_file.read_text(encoding="utf-8").strip() if key_file.exists() else key
    for p, path in files.items():
        # unsharded, every event goes to one partition: the others' alerts would get no more events;
        # a new shard key sends an alert's events to another partition than the one holding it
        stranded = p != unsharded_partition if key == unsharded else before != key
        pending = pending_work(path) if stranded else 0
        if pending:
            was, keep = ((f"sharding.key {before!r}", f"sharding.key {before!r}") if before != key
                         else ("several dispatcher workers", "sharding enabled"))
            raise ConfigError(f"{path} holds partition {p}'s state of {was} ({pending} active alert(s) or unsent "
                              f"notification(s)); keep {keep} until it has drained")
    key_file.write_text(key + "\n", encoding="utf-8")


def _adopt(single: Path, target: Path, lock_path: Path) -> None:
    """Move ``single`` to ``target`` (checkpointed first), unless the partition's owner holds its lock."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a running owner already adopted it (it prepared the directory before taking the partition)
        if target.exists() or not single.exists():
            return
        conn = sqlite3.connect(single)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{single}{suffix}").unlink(missing_ok=True)
        os.rename(single, target)
        log.info("adopted the single dispatcher's %s as %s", single.name, target.name)
    finally:
        os.close(fd)  # releases the lock


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
