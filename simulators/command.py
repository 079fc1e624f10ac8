"""``cityeye simulate``: publish simulated sensor readings over MQTT.

Example: ``cityeye simulate --scenario flood --speed 600 --duration-h 12
--seed 7 --labels labels.jsonl`` (12 simulated hours in 72 s). The registry
is ``settings.registry`` or the default the command line declares (the demo
city, :data:`simulators.DEMO_REGISTRY`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from cityeye.command import EXIT_CONFIG_ERROR, run_service
from cityeye.config import Settings
from cityeye.contracts import parse_ts
from cityeye.sensor_registry import SensorRegistry, load_settings_and_registry
from simulators.common import SCENARIOS

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def _start_time(text: str) -> float | None:
    if text in ("auto", ""):
        return None
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (default: $CITYEYE_CONFIG, then defaults)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="all",
                        help="normal: no events; flood: rainstorm + river flood; all: flood + traffic incidents "
                             "(default: %(default)s)")
    parser.add_argument("--speed", type=float, default=600.0,
                        help="simulated seconds per real second; 0 = as fast as possible (default: %(default)s)")
    parser.add_argument("--duration-h", "--duration", dest="duration_h", type=float, default=24.0,
                        help="simulated hours (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="random seed; same seed, same payloads (default: %(default)s)")
    parser.add_argument("--start", type=_start_time, default=None, metavar="RFC3339",
                        help="simulated start time (default: now, or now minus the duration when accelerated)")
    parser.add_argument("--batch", type=int, default=1,
                        help="weather stations send JSON arrays of this many readings (default: %(default)s)")
    parser.add_argument("--labels", metavar="FILE", help="write ground-truth labels here (.csv or JSON lines)")


def run(args: argparse.Namespace) -> int:
    if args.duration_h <= 0 or args.batch < 1:
        log.error("--duration-h must be positive and --batch at least 1")
        return EXIT_CONFIG_ERROR

    async def simulate(config: tuple[Settings, SensorRegistry], stop: asyncio.Event) -> None:
        from simulators.simulation import run_simulation

        settings, registry = config
        result = await run_simulation(settings, registry, speed=args.speed, scenario=args.scenario, seed=args.seed,
                                      duration_h=args.duration_h, labels_path=args.labels, stop_event=stop,
                                      start=args.start, batch=args.batch)
        print(f"published {result.messages_published} messages ({result.readings} readings), "
              f"{len(result.labels)} labels")

    # a broker that refuses the connection is an OS error: exit 1
    return run_service("simulate", lambda: load_settings_and_registry(args.config), simulate)
