"""``cityeye sinks``: the InfluxDB writer and the webhook forwarder, together.

Which sinks run follows the settings: the InfluxDB writer when
``influx.enabled``, the webhook forwarder when ``webhook.url`` is set. Each
is a :class:`~alerts.sinks.consumer.SinkConsumer` with its own consumer
group; they share one producer for ``alerts.deadletter``.

In-process use (the embedded runner, tests)::

    stop = asyncio.Event()
    task = asyncio.create_task(run_sinks(settings, stop))
    ...
    stop.set()          # each sink flushes, commits what it wrote, and closes
    await task

:func:`run_sinks` returns when ``stop`` is set, or raises if a sink fails
unexpectedly (after stopping the others). It raises
:class:`~cityeye.errors.ConfigError` when no sink is enabled.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from alerts.sinks.base import BaseSink
from alerts.sinks.consumer import SinkConsumer
from alerts.sinks.deadletter import DeadLetterWriter
from alerts.sinks.influx import InfluxSink
from alerts.sinks.webhook_forwarder import WebhookForwarder
from cityeye.command import EXIT_OS_ERROR, run_service
from cityeye.config import Settings, load_settings
from cityeye.metrics import start_metrics
from cityeye.contracts import TOPIC_ALERTS, TOPIC_ALERTS_DEADLETTER, all_topics
from cityeye.errors import CityEyeError, ConfigError
from cityeye.kafka import ensure_topics, make_producer

__all__ = ["add_arguments", "run", "run_sinks", "build_sinks"]

log = logging.getLogger(__name__)


def build_sinks(settings: Settings) -> list[BaseSink]:
    """The sinks the settings enable (InfluxDB writer, webhook forwarder)."""
    sinks: list[BaseSink] = []
    if settings.influx.enabled:
        sinks.append(InfluxSink(settings.influx))
    if settings.webhook.url:
        sinks.append(WebhookForwarder(settings.webhook))
    return sinks


async def run_sinks(settings: Settings, stop: asyncio.Event) -> None:
    """Run every enabled sink until ``stop`` is set (see the module docstring)."""
    sinks = build_sinks(settings)
    if not sinks:
        raise ConfigError("no sink enabled: set influx.enabled and/or webhook.url")
    topics = all_topics()
    await ensure_topics(settings.kafka, {t: topics[t] for t in (TOPIC_ALERTS, TOPIC_ALERTS_DEADLETTER)})
    producer = make_producer(settings.kafka, "sinks-deadletter")
    await producer.start()
    inner = asyncio.Event()
    deadletters = DeadLetterWriter(producer)
    tasks = [asyncio.create_task(SinkConsumer(settings.kafka, sink, deadletters=deadletters).run(inner),
                                 name=f"sink-{sink.name}") for sink in sinks]
    stopper = asyncio.create_task(stop.wait(), name="sinks-stop")
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in tasks if t in done and t.exception() is not None]
        if failed:
            log.error("sink task %s failed: %r; stopping the others", failed[0].get_name(), failed[0].exception())
    finally:
        inner.set()
        stopper.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="YAML settings file (default: $CITYEYE_CONFIG, then the environment)")


def run(args: argparse.Namespace) -> int:
    async def serve(settings: Settings, stop: asyncio.Event) -> int | None:
        start_metrics(settings.metrics, "sinks")
        try:
            await run_sinks(settings, stop)
        except ConfigError:
            raise  # exit 2 (no sink enabled)
        except CityEyeError as exc:  # a sink failed while running: not a configuration problem
            log.error("%s", exc)
            return EXIT_OS_ERROR
        return None

    return run_service("sinks", lambda: load_settings(args.config), serve)
