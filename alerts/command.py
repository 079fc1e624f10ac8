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

With ``sharding.enabled`` in the alerting file the process is one of
several workers (alerts/runtime/sharding.py): start as many as needed with the same
files; they share ``state_dir`` and split the partitions of ``alerts.grouped``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Callable

from alerts.config import AlertingConfig, load_alerting_config
from alerts.runtime.dispatcher import DispatcherBase, make_dispatcher
from cityeye.config import Settings, load_settings
from cityeye.errors import CityEyeError

__all__ = ["add_arguments", "run", "serve"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="CityEye settings YAML (default: $CITYEYE_CONFIG)")
    parser.add_argument("--alerting", metavar="FILE",
                        help="alerting YAML (default: $CITYEYE_ALERTING or alerts/example-alerting.yaml)")
    parser.add_argument("--api-port", type=int, metavar="PORT", help="override api.port (0 = any free port)")


async def serve(settings: Settings, stop: asyncio.Event, alerting: AlertingConfig | str | Path | None = None,
                started: Callable[[DispatcherBase], None] | None = None, api_port: int | None = None) -> None:
    """Run a dispatcher until ``stop`` is set (the embedded runner's entry point)."""
    if not isinstance(alerting, AlertingConfig):
        alerting = load_alerting_config(alerting or os.environ.get("CITYEYE_ALERTING") or None)
    dispatcher = make_dispatcher(settings, alerting, api_port=api_port)
    runner = asyncio.create_task(dispatcher.run(stop))
    if started is not None:
        ready = asyncio.create_task(dispatcher.ready.wait())
        await asyncio.wait([runner, ready], return_when=asyncio.FIRST_COMPLETED)
        if dispatcher.ready.is_set():
            started(dispatcher)
        ready.cancel()
    await runner


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        alerting = load_alerting_config(args.alerting or os.environ.get("CITYEYE_ALERTING") or None)
    except CityEyeError as exc:
        log.error("%s", exc)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop, alerting,
                    started=lambda d: log.info("dispatcher ready (API port %s)", d.api_port),
                    api_port=args.api_port)

    try:
        asyncio.run(main())
    except CityEyeError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:  # e.g. the API port is taken, state_dir not writable
        log.error("dispatcher could not start: %s", exc)
        return 1
    return 0
