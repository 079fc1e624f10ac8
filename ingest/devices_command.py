"""``cityeye devices``: device-owner tools.

Command line::

    cityeye devices test-mapping FILE [FILE ...] [--registry FILE] [--config FILE]

``test-mapping`` validates each vendor mapping file and runs its golden
examples through the gateway's own path (mapping, then validation against
the registry and the kinds' physical ranges), printing one line per
example. The registry defaults to the settings' (``--config`` or
``$CITYEYE_CONFIG``), then the demo city's. Exit codes: 0 every example
passed, 1 an example failed, 2 a file is invalid (the message names the
file, line and field).
"""

from __future__ import annotations

import argparse
import sys

from cityeye.errors import CityEyeError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="devices_command", required=True, metavar="{test-mapping}")
    p = sub.add_parser("test-mapping", help="validate vendor mapping files and run their golden examples")
    p.add_argument("files", nargs="+", metavar="FILE", help="mapping YAML files (docs/device-formats.md)")
    p.add_argument("--registry", metavar="FILE", help="sensor registry (default: the settings' registry)")
    p.add_argument("--config", metavar="FILE", help="settings YAML (default: $CITYEYE_CONFIG)")


def _test_mappings(args: argparse.Namespace) -> int:
    from cityeye.config import load_settings
    from cityeye.sensor_registry import load_registry, registry_for
    from ingest.mapping import load_mapping
    from ingest.mapping_examples import run_examples
    from ingest.validation import Limits

    settings = load_settings(args.config)
    registry = load_registry(args.registry) if args.registry else registry_for(settings)
    limits = Limits.from_settings(settings)
    failed = total = 0
    for path in args.files:
        mapping = load_mapping(path)
        results = run_examples(mapping, registry, limits)
        if not results:
            print(f"{path}: {mapping.name}: no examples (add golden payloads under examples:)")
            failed += 1
        for result in results:
            total += 1
            print(f"{'ok  ' if result.passed else 'FAIL'} {mapping.name}: {result.name}")
            for problem in result.problems:
                print(f"       {problem}")
            failed += not result.passed
    print(f"{total - failed} of {total} examples passed" if total else "no examples run")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        return _test_mappings(args)
    except CityEyeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
