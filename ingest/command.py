"""``cityeye gateway``: run the MQTT -> Kafka ingest gateway until SIGINT/SIGTERM.

The registry is ``settings.registry`` or, when that is empty, the default
registry the command line declares (the demo city,
``simulators/demo_registry.yaml``; see ``cityeye.sensor_registry``).
"""

from __future__ import annotations

import argparse
import asyncio

from cityeye.command import run_service
from cityeye.config import Settings
from cityeye.kafka import ensure_topics
from cityeye.metrics import start_metrics
from cityeye.sensor_registry import SensorRegistry, load_settings_and_registry

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (default: $CITYEYE_CONFIG, then defaults)")
    parser.add_argument("--no-create-topics", action="store_true",
                        help="do not create missing Kafka topics at start (they must exist)")


def run(args: argparse.Namespace) -> int:
    async def serve(config: tuple[Settings, SensorRegistry], stop: asyncio.Event) -> None:
        from ingest.gateway import Gateway

        settings, registry = config
        start_metrics(settings.metrics, "gateway")
        if not args.no_create_topics:
            await ensure_topics(settings.kafka)
        await Gateway(settings, registry).run_forever(stop)

    return run_service("gateway", lambda: load_settings_and_registry(args.config), serve)
