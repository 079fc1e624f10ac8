"""The Faust app factory, configured from :class:`cityeye.config.Settings`.

:func:`create_app` builds a fresh ``faust.App`` with the detector agent, the
clock timer and the snapshot table (a factory, not a module global, so a
process can run, stop and rebuild workers, e.g. the embedded runner and the
tests).

Broker-profile tuning is configuration only (:func:`faust_settings`):

``tansu`` (embedded/test broker)
    ``broker_session_timeout=2.0``, ``broker_heartbeat_interval=0.5`` (Tansu
    holds each JoinGroup for half the session timeout),
    ``fetch_max_wait_ms=100`` (it holds fetches the full wait while a
    partition is idle), ``fetch_end_offsets`` (its ListOffsets is wrong for
    multi-record batches, which would make Faust's changelog recovery stop
    early: the recovery's end offsets come from Fetch high watermarks
    instead, streams/transport.py), ``producer_linger=0`` (records gather
    in a batch while the previous produce request is in flight anyway:
    lingering only delays each alert event and snapshot),
    ``stream_recovery_delay=0``.
``kafka``
    Faust's defaults apart from the session/heartbeat/fetch wait of
    :class:`~cityeye.config.KafkaSettings`.

Both: ``producer_max_batch_size`` :data:`PRODUCER_BATCH_BYTES` (a sensor's
snapshot is up to ~16 KB, so Faust's default 16 KiB batches would carry one
snapshot per partition per produce request, and aiokafka keeps one request
in flight per broker: a burst of alert changes, each followed by its
sensor's snapshot, then waits a broker round trip per snapshot and
partition), ``acks=all`` without idempotence (at-least-once; Faust only enables
idempotence for ``exactly_once``, which Tansu rejects), ``store=memory://``,
``topic_partitions`` from :data:`cityeye.contracts.TOPIC_PARTITIONS`, and the
web server disabled unless a port is given, then bound to 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cityeye.config import Settings
from cityeye.kinds import use_kinds_file
from cityeye.sensor_registry import SensorRegistry, registry_for
from streams.agents import DetectorRuntime, attach_agents
from streams.alert_sender import AlertSender
from streams.live_rules import LiveRules
from streams.sensor_engine import ChecksFactory, SensorEngine
from streams.tables import define_snapshot_table
from streams.topics import define_topics, readings_partitions
from streams.transport import CityEyeFaustApp, CityEyeTableManager

__all__ = ["StreamsApp", "create_app", "faust_settings"]


#: per broker profile: Faust settings that live with a broker's quirks
PROFILE_TUNING: dict[str, dict[str, Any]] = {
    "tansu": {"producer_linger": 0.0, "stream_recovery_delay": 0.0},
    "kafka": {},
}
#: the most bytes of one partition's snapshots and alert events in one produce request
PRODUCER_BATCH_BYTES = 512 * 1024


@dataclass
class StreamsApp:
    """A configured Faust app and the detector runtime wired into it."""

    app: CityEyeFaustApp
    runtime: DetectorRuntime
    settings: Settings


def faust_settings(settings: Settings, *, web_port: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` for ``settings`` (see the module docstring)."""
    kafka = settings.kafka
    conf: dict[str, Any] = {
        "id": f"{kafka.consumer_group_prefix}-streams",
        "broker": f"kafka://{kafka.bootstrap}",
        "broker_client_id": f"{kafka.client_id_prefix}-streams",
        "store": "memory://",
        "topic_partitions": readings_partitions(),
        "topic_replication_factor": 1,
        "broker_session_timeout": kafka.session_timeout_s,
        "broker_heartbeat_interval": kafka.heartbeat_interval_s,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "fetch_end_offsets": None if kafka.list_offsets_exact else kafka,
        "producer_acks": -1,
        "producer_linger": 0.005,
        "producer_max_batch_size": PRODUCER_BATCH_BYTES,
        "consumer_auto_offset_reset": "earliest",
        "autodiscover": False,
        "TableManager": CityEyeTableManager,
        "web_enabled": web_port is not None,
        "web_bind": "127.0.0.1",
        "web_host": "127.0.0.1",
        "web_port": web_port or 6066,
    }
    conf.update(PROFILE_TUNING[kafka.profile])
    return conf




def create_app(
    settings: Settings,
    *,
    web_port: int | None = None,
    registry: SensorRegistry | None = None,
    checks_factory: ChecksFactory | None = None,
    batch_size: int = 500,
    batch_within_s: float = 0.02,
    tick_interval_s: float = 1.0,
) -> StreamsApp:
    """A new Faust app running the detectors on every readings topic.

    ``batch_size``/``batch_within_s`` bound a processing batch
    (``stream.take_events``); ``tick_interval_s`` is the wall-clock period
    of the stale-sensor clock. Without a ``checks_factory`` the checks come
    from the built-in rules and ``settings.rules`` (:class:`~streams.live_rules.LiveRules`,
    reloaded when the file changes). Raises :class:`~cityeye.errors.RegistryError`
    for a bad registry file, :class:`~detectors.rulebook.RulesError` for a bad rules file.
    The kinds of ``settings.kinds`` are declared first: the app subscribes to their topics.
    """
    use_kinds_file(settings.kinds)  # a no-op when the command line declared them already
    registry = registry if registry is not None else registry_for(settings)
    live_rules = LiveRules(settings.rules, registry) if checks_factory is None else None
    engine = SensorEngine(registry, live_rules.checks_for if live_rules else checks_factory)
    if live_rules is not None:
        engine.rules_version = live_rules.version
    app = CityEyeFaustApp(**faust_settings(settings, web_port=web_port))
    topics = define_topics(app)
    snapshots = define_snapshot_table(app, partitions=readings_partitions())
    runtime = DetectorRuntime(app, engine, topics, snapshots, snapshot_every=settings.snapshot_every,
                              alerts=AlertSender(settings.kafka), kafka=settings.kafka, live_rules=live_rules)
    attach_agents(app, runtime, batch_size=batch_size, batch_within_s=batch_within_s,
                  tick_interval_s=tick_interval_s, rules_check_s=settings.rules_check_s)
    return StreamsApp(app=app, runtime=runtime, settings=settings)
