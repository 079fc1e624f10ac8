"""``cityeye gateway``: run the MQTT -> Kafka ingest gateway until SIGINT/SIGTERM.

The registry is ``settings.registry`` or, when that is empty, the bundled
demo registry ``simulators/demo_registry.yaml``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from cityeye.config import Settings, load_settings
from cityeye.errors import ConfigError
from cityeye.kafka import ensure_topics
from cityeye.sensor_registry import SensorRegistry, registry_for

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (default: $CITYEYE_CONFIG, then defaults)")
    parser.add_argument("--no-create-topics", action="store_true",
                        help="do not create missing Kafka topics at start (they must exist)")


async def _serve(settings: Settings, registry: SensorRegistry, create_topics: bool) -> None:
    from ingest.gateway import Gateway

    if create_topics:
        await ensure_topics(settings.kafka)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await Gateway(settings, registry).run_forever(stop)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        registry = registry_for(settings)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    asyncio.run(_serve(settings, registry, not args.no_create_topics))
    return 0
