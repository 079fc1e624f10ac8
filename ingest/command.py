"""``cityeye gateway``: run the MQTT -> Kafka ingest gateway until SIGINT/SIGTERM.

The registry is ``settings.registry`` or, when that is empty, the default
registry the command line declares (the demo city,
``simulators/demo_registry.yaml``; see ``cityeye.sensor_registry``).

Warm standby (the embedded broker rollover, launch/broker_rollover.py)::

    cityeye gateway --config next.yaml --standby READY_FILE

imports everything, builds the gateway and connects its producer to Kafka,
writes ``READY_FILE`` and waits, subscribed to nothing, for SIGUSR1: only
then does it start its metrics server, connect to MQTT and take over the
persistent session (same client id) the gateway it replaces has left.
SIGTERM before that stops it without subscribing.
"""

from __future__ import annotations

import argparse
import asyncio

from cityeye.command import go_or_now, run_service
from cityeye.config import Settings
from cityeye.kafka import ensure_topics
from cityeye.metrics import start_metrics
from cityeye.sensor_registry import SensorRegistry, load_settings_and_registry

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (default: $CITYEYE_CONFIG, then defaults)")
    parser.add_argument("--no-create-topics", action="store_true",
                        help="do not create missing Kafka topics at start (they must exist)")
    parser.add_argument("--standby", metavar="READY_FILE", default=None,
                        help="warm standby: connect to Kafka, write READY_FILE, and subscribe to MQTT only on "
                             "SIGUSR1 (the embedded broker rollover)")


def run(args: argparse.Namespace) -> int:
    async def serve(config: tuple[Settings, SensorRegistry], stop: asyncio.Event) -> None:
        from ingest.gateway import Gateway

        settings, registry = config

        standby = go_or_now(args.standby, stop, lambda: start_metrics(settings.metrics, "gateway"))
        if not args.no_create_topics:
            await ensure_topics(settings.kafka)
        await Gateway(settings, registry).run_forever(stop, before_subscribe=standby)

    return run_service("gateway", lambda: load_settings_and_registry(args.config), serve)
