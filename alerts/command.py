"""``cityeye dispatcher``: the alert lifecycle, dispatch and HTTP API process.

Command line::

    cityeye dispatcher --config cityeye.yaml --alerting alerting.yaml [--api-port 9094]

``--config`` is the usual CityEye settings file (Kafka, InfluxDB,
``state_dir``); ``--alerting`` the alerting configuration (routes,
receivers, inhibit rules, maintenance windows, timings, API), by default
``$CITYEYE_ALERTING`` or the bundled ``alerts/example-alerting.yaml``.
SIGTERM / SIGINT stop it cleanly (the current step finishes; state is
already persisted, so even ``kill -9`` loses nothing accepted).

In-process entry point (the embedded runner)::

    from alerts.command import serve
    stop = asyncio.Event()
    await serve(settings, stop)                    # returns once stop is set
    await serve(settings, stop, alerting="my.yaml", started=callback)

``started(dispatcher)`` is called once the dispatcher is consuming and its
API is listening (``dispatcher.api_port`` is the bound port).

Every process is one dispatcher worker (alerts/dispatcher.py); alone
it owns every partition of ``alerts.grouped``. With ``sharding.enabled`` in
the alerting file, start as many as needed with the same files: they share
``state_dir`` and split the partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path
from typing import Callable

from alerts.config import AlertingConfig, load_alerting_config
from alerts.dispatcher import Dispatcher
from cityeye.command import run_service
from cityeye.config import Settings, load_settings
from cityeye.metrics import start_metrics

__all__ = ["add_arguments", "run", "serve"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="CityEye settings YAML (default: $CITYEYE_CONFIG)")
    parser.add_argument("--alerting", metavar="FILE",
                        help="alerting YAML (default: $CITYEYE_ALERTING or alerts/example-alerting.yaml)")
    parser.add_argument("--api-port", type=int, metavar="PORT", help="override api.port (0 = any free port)")


def _alerting(path: str | Path | None) -> AlertingConfig:
    return load_alerting_config(path or os.environ.get("CITYEYE_ALERTING") or None)


async def serve(settings: Settings, stop: asyncio.Event, alerting: AlertingConfig | str | Path | None = None,
                started: Callable[[Dispatcher], None] | None = None, api_port: int | None = None) -> None:
    """Run a dispatcher until ``stop`` is set (the embedded runner's entry point)."""
    if not isinstance(alerting, AlertingConfig):
        alerting = _alerting(alerting)
    dispatcher = Dispatcher(settings, alerting, api_port=api_port)
    runner = asyncio.create_task(dispatcher.run(stop))
    if started is not None:
        ready = asyncio.create_task(dispatcher.ready.wait())
        await asyncio.wait([runner, ready], return_when=asyncio.FIRST_COMPLETED)
        if dispatcher.ready.is_set():
            started(dispatcher)
        ready.cancel()
    await runner


def run(args: argparse.Namespace) -> int:
    def load() -> tuple[Settings, AlertingConfig]:
        return load_settings(args.config), _alerting(args.alerting)

    async def main(config: tuple[Settings, AlertingConfig], stop: asyncio.Event) -> None:
        settings, alerting = config
        start_metrics(settings.metrics, "dispatcher")
        await serve(settings, stop, alerting, api_port=args.api_port,
                    started=lambda d: log.info("dispatcher ready (API port %s)", d.api_port))

    return run_service("dispatcher", load, main)
