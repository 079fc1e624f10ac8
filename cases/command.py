"""``cityeye cases``: the cases service, its migrations, passwords and org check.

Command line::

    cityeye cases [serve] --config cityeye.yaml --cases-config cases.yaml [--port 8090]
    cityeye cases migrate --cases-config cases.yaml      # bring the database schema up to date
    cityeye cases passwd USERNAME --cases-config cases.yaml   # reads the new password from stdin / a prompt
    cityeye cases check-org ORG.yaml                      # validate an org file

``--config`` is the usual CityEye settings file (Kafka, InfluxDB, the
registry); ``--cases-config`` the cases file (``$CITYEYE_CASES_CONFIG``,
default ``cases/demo_cases.yaml``); ``$CITYEYE_CASES_DATABASE_URL`` wins
over its ``database_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from pathlib import Path

from cases.auth import Authenticator
from cases.config import CasesConfig, load_cases_config
from cases.errors import CaseError
from cases.org import load_org
from cases.service import CasesService
from cases.store import CaseStore
from cityeye.command import EXIT_CONFIG_ERROR, EXIT_OK, run_service
from cityeye.config import Settings
from cityeye.errors import CityEyeError
from cityeye.metrics import start_metrics
from cityeye.sensor_registry import SensorRegistry, load_settings_and_registry

__all__ = ["add_arguments", "run", "DEMO_CASES"]

DEMO_CASES = Path(__file__).resolve().parent / "demo_cases.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="serve", choices=("serve", "migrate", "passwd", "check-org"))
    parser.add_argument("target", nargs="?", help="passwd: the username; check-org: the org file")
    parser.add_argument("--config", metavar="FILE", help="CityEye settings YAML (default: $CITYEYE_CONFIG)")
    parser.add_argument("--cases-config", metavar="FILE",
                        help="cases YAML (default: $CITYEYE_CASES_CONFIG or cases/demo_cases.yaml)")
    parser.add_argument("--port", type=int, metavar="PORT", help="override listen.port (0 = any free port)")


def _cases_config(args: argparse.Namespace) -> CasesConfig:
    config = load_cases_config(args.cases_config or os.environ.get("CITYEYE_CASES_CONFIG") or DEMO_CASES)
    if args.port is not None:
        config.listen.port = args.port
    return config


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != first:
            raise CaseError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _admin(args: argparse.Namespace) -> int:
    try:
        if args.action == "check-org":
            org = load_org(args.target or "")
            print(f"{args.target}: {len(org.units)} units, {len(org.departments)} departments, "
                  f"{len(org.people)} people: OK")
            return EXIT_OK
        config = _cases_config(args)
        store = CaseStore.open(config.database_url.get_secret_value())
        if args.action == "passwd":
            if not args.target:
                raise CaseError("passwd needs the username")
            Authenticator(store, load_org(config.org)).set_password(args.target, _password(), time.time())
            print(f"password of {args.target} set; their sessions are signed out")
        else:
            print("cases database schema is up to date")
        store.engine.dispose()
        return EXIT_OK
    except CityEyeError as exc:
        print(f"cityeye cases {args.action}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def run(args: argparse.Namespace) -> int:
    if args.action != "serve":
        return _admin(args)

    def load() -> tuple[Settings, SensorRegistry, CasesConfig]:
        settings, registry = load_settings_and_registry(args.config)
        return settings, registry, _cases_config(args)

    async def main(loaded: tuple[Settings, SensorRegistry, CasesConfig], stop: asyncio.Event) -> None:
        settings, registry, config = loaded
        start_metrics(settings.metrics, "cases")
        service = await asyncio.to_thread(CasesService, config, settings, registry)
        await service.run(stop)

    return run_service("cases", load, main)
