"""``cityeye devices``: device accounts on the MQTT broker, and device-owner tools.

``cityeye devices export-acl --out DIR`` writes Mosquitto's password file
(``DIR/mosquitto.passwd``, hashed) and ACL file (``DIR/mosquitto.acl``)
for the registry's devices and CityEye's service accounts, taking the
passwords from the credentials file (``--credentials``, default
``mqtt-credentials.yaml``, 0600), which gets a random password for every
account that has none yet. Each device may publish to its own topic, its
SenML topic (when ``ingest.senml`` is on) and the topics of the vendor
mappings of its kind (``ingest.mappings``, or ``--mapping FILE``); add
``--topic-template`` for any further topic (``cityeye/senml/{sensor_id}``).

``cityeye devices password SENSOR_ID`` prints one account's password on
standard output, for handing to the device's owner; nothing else ever
prints or logs a password.

``cityeye devices test-mapping FILE [FILE ...] [--registry FILE] [--config FILE]``
validates each vendor mapping file and runs its golden examples through the
gateway's own path (mapping, then validation against the registry and the
kinds' physical ranges), printing one line per example. The registry
defaults to the settings' (``--config`` or ``$CITYEYE_CONFIG``), then the
demo city's. Exit codes: 0 every example passed, 1 an example failed, 2 a
file is invalid (the message names the file, line and field).
"""

from __future__ import annotations

import argparse
import logging
import sys

from cityeye.device_credentials import SERVICE_ACCOUNTS, load_or_create
from cityeye.errors import CityEyeError
from cityeye.sensor_registry import load_settings_and_registry
from ingest.device_access import DEFAULT_TOPIC_TEMPLATE, device_templates, export_broker_files
from ingest.mapping import load_mapping

__all__ = ["add_arguments", "run"]

log = logging.getLogger("cityeye.devices")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    export = sub.add_parser("export-acl", help="write Mosquitto's password and ACL files from the registry")
    export.add_argument("--out", default=".", metavar="DIR",
                        help="directory for mosquitto.passwd and mosquitto.acl (default: %(default)s)")
    export.add_argument("--topic-template", action="append", default=None, metavar="TEMPLATE",
                        help="a topic each device may publish to, with {sensor_id}, {district}, {kind}; "
                             f"repeatable (default: {DEFAULT_TOPIC_TEMPLATE})")
    export.add_argument("--mapping", action="append", default=None, metavar="FILE",
                        help="a vendor mapping whose topics the devices of its kind may publish to; repeatable "
                             "(default: the settings' ingest.mappings)")
    show = sub.add_parser("password", help="print one account's MQTT password on standard output")
    show.add_argument("username", help="a sensor id or a service account (cityeye-gateway, cityeye-notifier)")
    for p in (export, show):
        p.add_argument("--config", metavar="FILE", help="YAML config file (its registry is used)")
        p.add_argument("--credentials", default="mqtt-credentials.yaml", metavar="FILE",
                       help="credentials file, created 0600 with random passwords (default: %(default)s)")
    p = sub.add_parser("test-mapping", help="validate vendor mapping files and run their golden examples")
    p.add_argument("files", nargs="+", metavar="FILE", help="mapping YAML files (docs/device-formats.md)")
    p.add_argument("--registry", metavar="FILE", help="sensor registry (default: the settings' registry)")
    p.add_argument("--config", metavar="FILE", help="settings YAML (default: $CITYEYE_CONFIG)")


def _test_mappings(args: argparse.Namespace) -> int:
    from cityeye.config import load_settings
    from cityeye.sensor_registry import load_registry, registry_for
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
    if args.devices_command == "test-mapping":
        try:
            return _test_mappings(args)
        except CityEyeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        settings, registry = load_settings_and_registry(args.config)
        creds, added = load_or_create(args.credentials, [s.id for s in registry])
        if args.devices_command == "password":
            password = creds.password(args.username)
            if password is None:
                log.error("no account %r in %s", args.username, args.credentials)
                return 2
            sys.stdout.write(password.get_secret_value() + "\n")
            return 0
        templates = args.topic_template or device_templates(settings)
        mappings = [load_mapping(p) for p in (args.mapping or settings.ingest.mappings)]
        files = export_broker_files(registry, creds, args.out, templates, mappings)
    except CityEyeError as exc:
        log.error("%s", exc)
        return 2
    print(f"wrote {files.password_path} and {files.acl_path}: {files.devices} device account(s), "
          f"{files.services} service account(s) ({', '.join(SERVICE_ACCOUNTS)}); "
          f"credentials in {args.credentials} ({added} new password(s))")
    return 0
