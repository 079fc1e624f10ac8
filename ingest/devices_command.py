"""``cityeye devices``: device accounts on the MQTT broker.

``cityeye devices export-acl --out DIR`` writes Mosquitto's password file
(``DIR/mosquitto.passwd``, hashed) and ACL file (``DIR/mosquitto.acl``)
for the registry's devices and CityEye's service accounts, taking the
passwords from the credentials file (``--credentials``, default
``mqtt-credentials.yaml``, 0600), which gets a random password for every
account that has none yet. Add ``--topic-template`` for each further topic
a device may publish to (``cityeye/senml/{sensor_id}``).

``cityeye devices password SENSOR_ID`` prints one account's password on
standard output, for handing to the device's owner; nothing else ever
prints or logs a password.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cityeye.device_credentials import SERVICE_ACCOUNTS, load_or_create
from cityeye.errors import CityEyeError
from cityeye.sensor_registry import load_settings_and_registry
from ingest.device_access import DEFAULT_TOPIC_TEMPLATE, export_broker_files

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
    show = sub.add_parser("password", help="print one account's MQTT password on standard output")
    show.add_argument("username", help="a sensor id or a service account (cityeye-gateway, cityeye-notifier)")
    for p in (export, show):
        p.add_argument("--config", metavar="FILE", help="YAML config file (its registry is used)")
        p.add_argument("--credentials", default="mqtt-credentials.yaml", metavar="FILE",
                       help="credentials file, created 0600 with random passwords (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        _settings, registry = load_settings_and_registry(args.config)
        creds, added = load_or_create(args.credentials, [s.id for s in registry])
        if args.devices_command == "password":
            password = creds.password(args.username)
            if password is None:
                log.error("no account %r in %s", args.username, args.credentials)
                return 2
            sys.stdout.write(password.get_secret_value() + "\n")
            return 0
        files = export_broker_files(registry, creds, args.out, args.topic_template or [DEFAULT_TOPIC_TEMPLATE])
    except CityEyeError as exc:
        log.error("%s", exc)
        return 2
    print(f"wrote {files.password_path} and {files.acl_path}: {files.devices} device account(s), "
          f"{files.services} service account(s) ({', '.join(SERVICE_ACCOUNTS)}); "
          f"credentials in {args.credentials} ({added} new password(s))")
    return 0
