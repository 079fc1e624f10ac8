"""``cityeye rules``: check a rules file, show a sensor's effective rules, run rule tests.

Command line::

    cityeye rules check [--rules FILE] [--registry FILE]     # validate against the registry
    cityeye rules show SENSOR [--rules FILE] [--registry FILE]
    cityeye rules test FILE [FILE ...]                       # promtool-style rule tests

``--rules`` / ``--registry`` default to the settings' ``rules`` and
``registry`` (``--config`` or ``$CITYEYE_CONFIG``), then the built-in rules
and the demo registry. Exit codes: 0 fine, 1 a rule test failed, 2 a file
is invalid (the message names file, line and field).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cityeye.errors import CityEyeError

__all__ = ["add_arguments", "run", "format_effective"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="{check,show,test}")
    for name, help_ in (("check", "validate the rules file against the registry"),
                        ("show", "print a sensor's effective rules and where each value came from")):
        p = sub.add_parser(name, help=help_)
        if name == "show":
            p.add_argument("sensor", help="sensor id from the registry")
            p.add_argument("--json", action="store_true", help="JSON instead of text")
        p.add_argument("--rules", metavar="FILE", help="rules file (default: settings' rules, else built-in only)")
        p.add_argument("--registry", metavar="FILE", help="sensor registry (default: settings' registry)")
        p.add_argument("--config", metavar="FILE", help="settings YAML (default: $CITYEYE_CONFIG)")
    p = sub.add_parser("test", help="run rule test files (input series -> expected alerts)")
    p.add_argument("files", nargs="+", metavar="FILE")


def _load(args: argparse.Namespace):
    from cityeye.config import load_settings
    from cityeye.sensor_registry import load_registry, registry_for
    from detectors.rulebook import load_rulebook

    settings = load_settings(args.config) if (args.config or not (args.rules and args.registry)) else None
    registry = load_registry(args.registry) if args.registry else registry_for(settings)
    rules = args.rules if args.rules is not None else getattr(settings, "rules", "") or None
    rulebook = load_rulebook(rules)
    rulebook.check_registry(registry)
    return registry, rulebook


def format_effective(sensor: Any, rulebook: Any) -> str:
    """The text of ``cityeye rules show``: every check, its parameters, the layer of each, the builder's notes."""
    lines = [f"sensor {sensor.id} ({sensor.kind}, district {sensor.district}, every {sensor.interval_s:g} s); "
             f"rules version {rulebook.version}"]
    built = {eff.name: b for eff, b in rulebook.build(sensor)}
    for eff in rulebook.effective(sensor):
        state = "disabled" if not eff.params.get("enabled", True) else (
            "not built" if built.get(eff.name) is None or built[eff.name].check is None else "on")
        lines.append(f"\n{eff.name}  [{eff.type}, {state}]")
        resolved = built[eff.name].params if eff.name in built else {}
        for key, value in eff.params.items():
            if key == "type":
                continue
            shown = json.dumps(value, ensure_ascii=False, default=str)
            if key in resolved and resolved[key] != value:
                shown += f" = {json.dumps(resolved[key], ensure_ascii=False, default=str)}"
            lines.append(f"  {key:<18} {shown:<48} {eff.source.get(key, '')}")
        for note in built[eff.name].notes if eff.name in built else []:
            lines.append(f"  ! {note}")
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    registry, rulebook = _load(args)
    sensor = registry.get(args.sensor)
    if sensor is None:
        print(f"no sensor {args.sensor!r} in the registry {registry.source}", file=sys.stderr)
        return 2
    if args.json:
        out = [{"name": e.name, "type": e.type, "params": e.params, "source": e.source}
               for e in rulebook.effective(sensor)]
        print(json.dumps({"sensor": sensor.id, "rules_version": rulebook.version, "checks": out},
                         ensure_ascii=False, indent=2, default=str))
    else:
        print(format_effective(sensor, rulebook))
    return 0


def _test(args: argparse.Namespace) -> int:
    from evaluation.rule_tests import run_rule_test_file

    failed = passed = 0
    for path in args.files:
        for result in run_rule_test_file(path):
            if result.passed:
                passed += 1
                print(f"PASS {path}: {result.name}")
                continue
            failed += 1
            print(f"FAIL {path}: {result.name}")
            for failure in result.failures:
                print(f"  {failure}")
            print("  events: " + "; ".join(f"{t / 60:g} min {rule} {state} {sev}"
                                          for t, rule, state, sev in result.events))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    try:
        if args.rules_command == "test":
            return _test(args)
        if args.rules_command == "show":
            return _show(args)
        registry, rulebook = _load(args)
        print(f"rules OK: version {rulebook.version}, {len(registry)} sensors of {registry.source}")
        problems = [(s.id, eff.name, note) for s in registry for eff, b in rulebook.build(s) for note in b.notes]
        for sid, name, note in problems:
            print(f"  {sid} {name}: {note}")
        return 0
    except CityEyeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
