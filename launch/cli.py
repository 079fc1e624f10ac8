"""``cityeye`` command line: one entry point, one module per subcommand.

Each subcommand lives in its own module exposing ``add_arguments(parser)``
and ``run(args) -> int``; this file only wires them up, importing a
module when its subcommand is used (so ``cityeye eval`` does not import
Kafka clients, and a broken optional part cannot break the others).

It also declares the simulators' demo city (``simulators/demo_registry.yaml``)
as the default sensor registry: the one every command uses when the
configuration names none (:func:`cityeye.sensor_registry.set_default_registry`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cityeye.command import exit_now
from cityeye.sensor_registry import set_default_registry
from simulators import DEMO_REGISTRY

__all__ = ["main", "SUBCOMMANDS", "EXIT_AT_ONCE"]

#: name -> (module, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("launch.embedded", "run the whole service on embedded defaults with simulated sensors"),
    "gateway": ("ingest.command", "run the MQTT -> Kafka ingest gateway"),
    "worker": ("streams.command", "run the Faust detector worker"),
    "sinks": ("alerts.sinks.command", "run the alert sinks (InfluxDB writer, webhook forwarder)"),
    "dispatcher": ("alerts.command", "run the alert lifecycle, dispatch and HTTP API"),
    "cases": ("cases.command", "run the cases (工单) service: filing, dispatch, SLA, evaluation, API; admin"),
    "simulate": ("simulators.command", "publish simulated sensor readings over MQTT"),
    "devices": ("ingest.devices_command", "device accounts on the MQTT broker (password and ACL files)"),
    "eval": ("evaluation.command", "evaluate detectors (e.g. on the Numenta Anomaly Benchmark)"),
    "backtest": ("evaluation.backtest.command", "dry-run the rules on recorded or simulated data (report, diff)"),
    "tune": ("evaluation.tune", "sweep rule parameters on labelled data: Pareto table, plot, recommended YAML"),
    "rules": ("evaluation.rules_command", "check rules files, show a sensor's effective rules, run rule tests"),
    "devices": ("ingest.devices_command", "device owners' tools: test a vendor payload mapping's examples"),
}

#: subcommands whose process ends with :func:`cityeye.command.exit_now` once their service has stopped, when
#: run from the command line (not ``main(argv)``): the broker rollover starts the standby gateway only once the
#: gateway it replaces has exited, so the interpreter's teardown (0.5-0.7 s) would lengthen the intake pause
EXIT_AT_ONCE = frozenset({"gateway"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityeye",
        description="CityEye: streaming IoT sensing and early warning for a city operations centre.",
        epilog="Run `cityeye COMMAND --help` for a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = sys.argv[1] if len(sys.argv) > 1 else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == wanted:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = _parser()
    args, extra = parser.parse_known_args()
    if extra:
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    set_default_registry(DEMO_REGISTRY)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    code = int(module.run(args) or 0)
    if argv is None and args.command in EXIT_AT_ONCE:
        exit_now(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
