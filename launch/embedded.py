"""``cityeye run``: the whole service on embedded defaults, simulated sensors.

Starts the servers on free loopback ports (Tansu for Kafka, Mosquitto or
amqtt for MQTT, InfluxDB when ``influxd`` is on PATH), writes the
configuration that points every part at them, and runs each part as its own
process exactly as in production (``cityeye gateway``, ``worker``,
``sinks``, ``dispatcher``, ``simulate``), with their logs in the work
directory. It prints alert events as they fire, and stops everything
cleanly on Ctrl-C (or after ``--for`` seconds).

With them runs the cases service (``cityeye cases``, docs/cases.md) on the
demo org with short SLA times: it files cases from the simulated storm and
flood, dispatches them, escalates the overdue ones, and the run prints the
cases' steps and, at the end, the evaluation figures
(launch/embedded_cases.py). Reading and printing the alert events:
launch/embedded_alerts.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cityeye.command import stop_on_signals
from cityeye.config import Settings, load_settings
from cityeye.kafka import ensure_topics
from cases.org import load_org
from cityeye.device_credentials import GATEWAY_ACCOUNT, load_or_create, write_private
from cityeye.sensor_registry import load_registry
from ingest.device_access import DEFAULT_TOPIC_TEMPLATE, SENML_TOPIC_TEMPLATE, broker_auth_conf, export_broker_files
from ingest.mapping import SHIPPED_MAPPINGS, load_mapping
from launch.broker_rollover import BrokerRollover, BrokerRolloverSettings
from launch.embedded_alerts import follow_alerts, format_alert, print_alerts
from launch.embedded_cases import cap_polygons_for_alerting, prepare_cases, print_evaluation
from launch.servers import InfluxServer, ManagedServer, MosquittoServer, TansuServer, free_port, mqtt_server
from simulators import DEMO_REGISTRY

__all__ = ["add_arguments", "run", "EmbeddedStack", "format_alert", "follow_alerts"]

log = logging.getLogger("cityeye.run")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ALERTING = REPO / "alerts" / "example-alerting.yaml"
CASES_ORG = REPO / "cases" / "demo_org.yaml"

#: the parts, in start order: (name, extra CLI arguments)
PARTS: list[tuple[str, list[str]]] = [
    ("gateway", []),
    ("worker", []),
    ("sinks", []),
    ("dispatcher", []),
]

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", default="var/embedded", help="logs, config and state (default: %(default)s)")
    p.add_argument("--speed", type=float, default=600.0,
                   help="simulated seconds per real second (default: %(default)s = 10 min/s)")
    p.add_argument("--scenario", default="all", help="simulator scenario (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default: %(default)s)")
    p.add_argument("--duration-h", type=float, default=24.0, help="simulated hours (default: %(default)s)")
    p.add_argument("--for", dest="run_for", type=float, default=None, metavar="SECONDS",
                   help="stop by itself after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--no-influx", action="store_true", help="do not start InfluxDB even if installed")
    p.add_argument("--no-simulators", action="store_true", help="start the servers and services only")
    p.add_argument("--api-port", type=int, default=8080, help="dispatcher HTTP API port (default: %(default)s)")
    p.add_argument("--cases-port", type=int, default=8090, help="cases API and console port (default: %(default)s)")
    p.add_argument("--no-cases", action="store_true", help="do not start the cases service")
    p.add_argument("--rollover-max-rss-mib", type=float, default=160.0, metavar="MIB",
                   help="move to a fresh Kafka broker when the broker's RSS passes this (0: never; "
                        "default: %(default)s; docs/kafka-on-tansu.md)")
    p.add_argument("--rollover-every-min", type=float, default=0.0, metavar="MINUTES",
                   help="move to a fresh Kafka broker this often (0: never, the default)")


class EmbeddedStack:
    """The servers and service processes of ``cityeye run``."""

    def __init__(self, workdir: Path, with_influx: bool = True, api_port: int = 8080,
                 extra_config: dict | None = None, cases_port: int | None = None) -> None:
        self.workdir = workdir
        self.extra_config = extra_config or {}
        self.with_influx = with_influx
        self.api_port = api_port
        self.servers: list[ManagedServer] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.settings: Settings | None = None
        self.config_path = workdir / "cityeye.yaml"
        self.credentials_path = workdir / "mqtt-credentials.yaml"
        self.api_token = ""
        #: the cases service's port (None: not started) and database URL
        self.cases_port = cases_port
        self.cases_url = ""
        #: each service part's Prometheus metrics port (a free port per process, chosen at start)
        self.metrics_ports: dict[str, int] = {}
        #: each part's command-line arguments and environment, to start it again (broker rollover)
        self.part_args: dict[str, tuple[list[str], dict[str, str]]] = {}
        #: how many times the Kafka broker was replaced (readers of Kafka reconnect when it changes)
        self.generation = 0
        #: True while the broker rollover has parts stopped on purpose (they are not dead)
        self.rolling = False

    @property
    def broker(self) -> TansuServer:
        """The Kafka broker the parts use now."""
        return next(s for s in self.servers if isinstance(s, TansuServer))

    def start_servers(self) -> Settings:
        self.workdir.mkdir(parents=True, exist_ok=True)
        kafka = TansuServer(workdir=self.workdir / "tansu").start()
        self.servers.append(kafka)
        mqtt = mqtt_server(workdir=self.workdir / "mqtt")
        mqtt_config = self.secure_broker(mqtt)
        mqtt.start()
        self.servers.append(mqtt)
        print(f"kafka   : Tansu at {kafka.bootstrap} (memory storage)")
        print(f"mqtt    : {mqtt.name} at 127.0.0.1:{mqtt.port}"
              + (f", device accounts in {self.credentials_path}" if mqtt_config.get("username") else
                 ", ANONYMOUS (amqtt has no per-device ACL; install Mosquitto)"))
        config: dict = {
            "kafka": {"bootstrap": kafka.bootstrap, "profile": "tansu"},
            "mqtt": {"host": "127.0.0.1", "port": mqtt.port, **mqtt_config},
            "registry": str(DEMO_REGISTRY),
            "state_dir": str(self.workdir / "state"),
            # SenML is on by default; the shipped vendor mappings (docs/device-formats.md) too
            "ingest": {"mappings": [str(p) for p in SHIPPED_MAPPINGS]},
        }
        if self.with_influx and InfluxServer.available():
            influx = InfluxServer(workdir=self.workdir / "influxd").start()
            self.servers.append(influx)
            influx.create_database("cityeye")
            config["influx"] = {"enabled": True, "api": "v1", "url": influx.url, "database": "cityeye"}
            print(f"influxdb: InfluxDB 1.x at {influx.url}, database cityeye")
        else:
            config["influx"] = {"enabled": False}
            reason = "disabled by --no-influx" if not self.with_influx else "influxd is not on PATH"
            print(f"influxdb: off ({reason}): alert events are not written to InfluxDB")
        for section, values in self.extra_config.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
        write_private(self.config_path, yaml.safe_dump(config, sort_keys=False))  # it holds the gateway's password
        self.settings = load_settings(self.config_path)
        asyncio.run(ensure_topics(self.settings.kafka))
        return self.settings

    def secure_broker(self, mqtt: ManagedServer) -> dict:
        """Device accounts on Mosquitto (amqtt stays anonymous): the broker's password and ACL files from the
        stack's registry (the demo registry unless ``extra_config`` names one) and ``mqtt-credentials.yaml`` (0600); returns the ``mqtt`` settings of the gateway's
        account, with the credentials file the simulators publish as their devices with."""
        if not isinstance(mqtt, MosquittoServer):
            log.warning("%s has no per-device accounts: the embedded MQTT broker accepts anonymous clients", mqtt.name)
            return {}
        registry = load_registry(self.extra_config.get("registry") or DEMO_REGISTRY)  # the sensors the stack serves
        creds, _ = load_or_create(self.credentials_path, [sensor.id for sensor in registry])
        # each device's own topic, its SenML topic and the shipped mappings' topics of its kind (docs/devices.md)
        files = export_broker_files(registry, creds, self.workdir / "mqtt-auth",
                                    [DEFAULT_TOPIC_TEMPLATE, SENML_TOPIC_TEMPLATE],
                                    [load_mapping(path) for path in SHIPPED_MAPPINGS])
        mqtt.extra_conf = broker_auth_conf(files.password_path, files.acl_path)
        return {"username": GATEWAY_ACCOUNT, "password": creds.password(GATEWAY_ACCOUNT).get_secret_value(),
                "device_credentials": str(self.credentials_path)}

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.part_args[name] = (args, env or {})
        self.procs[name] = self._popen(name, args, env or {}, self.config_path)

    def _popen(self, name: str, args: list[str], env: dict[str, str], config: Path) -> subprocess.Popen:
        logf = open(self.workdir / f"{name}.log", "ab")
        cmd = [sys.executable, "-m", "launch.cli", name, "--config", str(config), *args]
        try:
            return subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=REPO, env={**os.environ, **env})
        finally:
            logf.close()

    def adopt(self, name: str, proc: subprocess.Popen) -> None:
        """Make ``proc`` (a spare from :meth:`start_part`) part ``name``'s process; the former one has stopped."""
        self.procs[name] = proc

    def write_alerting_config(self) -> Path:
        """The example alerting config, its CAP directories under the work dir, a fresh API token."""
        alerting = yaml.safe_load(EXAMPLE_ALERTING.read_text(encoding="utf-8"))
        polygons = cap_polygons_for_alerting()   # CAP <area>: the sensor's grid / district polygon
        for receiver in alerting.get("receivers", []):
            if receiver.get("directory"):
                receiver["directory"] = str(self.workdir / "cap" / receiver["name"])
            if receiver.get("type") == "cap":
                receiver["polygons"] = {**polygons, **(receiver.get("polygons") or {})}
        self.api_token = secrets.token_urlsafe(18)
        alerting.setdefault("api", {}).update({"host": "127.0.0.1", "port": self.api_port, "token": self.api_token})
        path = self.workdir / "alerting.yaml"
        write_private(path, yaml.safe_dump(alerting, sort_keys=False, allow_unicode=True))  # it holds the API token
        return path

    def start_services(self) -> None:
        alerting = self.write_alerting_config()
        for name, extra in PARTS:
            if name == "sinks" and not (self.settings.influx.enabled or self.settings.webhook.url):
                print("sinks   : not started (no sink enabled: InfluxDB is off and no webhook.url is set)")
                continue
            if name == "dispatcher":
                extra = [*extra, "--api-port", str(self.api_port), "--alerting", str(alerting)]
            self.metrics_ports[name] = free_port()
            self._spawn(name, extra, {"CITYEYE_METRICS__PORT": str(self.metrics_ports[name])})
        if self.cases_port is not None:
            cases_config, self.cases_url = prepare_cases(self.workdir, self.cases_port)
            self.metrics_ports["cases"] = free_port()
            self._spawn("cases", ["--cases-config", str(cases_config)],
                        {"CITYEYE_METRICS__PORT": str(self.metrics_ports["cases"])})
        print(f"services: {', '.join(self.procs)} (logs in {self.workdir}/)")
        print("metrics : " + ", ".join(f"{name} http://127.0.0.1:{port}/metrics"
                                       for name, port in self.metrics_ports.items()))
        print(f"notices : CAP 1.2 messages written to {self.workdir / 'cap'}/<receiver>/")

    def start_simulators(self, speed: float, scenario: str, seed: int, duration_h: float) -> None:
        self._spawn("simulate", ["--speed", str(speed), "--scenario", scenario, "--seed", str(seed),
                                 "--duration-h", str(duration_h),
                                 "--labels", str(self.workdir / "labels.jsonl")])
        print(f"sensors : simulated at {speed:g}x, scenario {scenario}, seed {seed}")

    def kafka_parts(self) -> list[str]:
        """The running parts that are Kafka clients, in start order (all but the simulators)."""
        return [name for name, proc in self.procs.items() if name != "simulate" and proc.poll() is None]

    def stop_part(self, name: str, timeout: float = 30.0) -> None:
        """Stop one part gracefully (SIGTERM), killing it after ``timeout`` seconds."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killing it", name, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def start_part(self, name: str, config: Path | None = None, extra_args: tuple[str, ...] = (),
                   spare: bool = False) -> subprocess.Popen:
        """Start a part again with its former arguments (and ``extra_args``) and the configuration as it is now
        (or ``config``); ``spare``: a second process, not (yet) the part's own (the rollover's standby)."""
        args, env = self.part_args[name]
        proc = self._popen(name, [*args, *extra_args], env, config or self.config_path)
        if not spare:
            self.procs[name] = proc
        return proc

    def write_config_for(self, server: TansuServer, path: Path) -> Path:
        """The configuration as it is, pointed at ``server``, written to ``path`` (0600: it holds passwords)."""
        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        config["kafka"]["bootstrap"] = server.bootstrap
        write_private(path, yaml.safe_dump(config, sort_keys=False))
        return path

    def use_broker(self, server: TansuServer) -> None:
        """Point the configuration at ``server`` instead of the current broker (parts read it when they start)."""
        self.servers[self.servers.index(self.broker)] = server
        self.write_config_for(server, self.config_path)
        self.settings = load_settings(self.config_path)
        self.generation += 1
        print(f"kafka   : now Tansu at {server.bootstrap} (broker rollover {self.generation})", flush=True)

    def dead_parts(self) -> list[str]:
        if self.rolling:
            return []
        return [n for n, p in self.procs.items() if p.poll() not in (None, 0) and n != "simulate"]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time: killing it", name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for server in reversed(self.servers):
            server.stop()


def run(args: argparse.Namespace) -> int:
    stack = EmbeddedStack(Path(args.workdir).resolve(), with_influx=not args.no_influx, api_port=args.api_port,
                          cases_port=None if args.no_cases else args.cases_port)
    started = time.monotonic()
    try:
        stack.start_servers()
        stack.start_services()
        if not args.no_simulators:
            stack.start_simulators(args.speed, args.scenario, args.seed, args.duration_h)
        print(f"duty console  : http://127.0.0.1:{args.api_port}/console/")
        print(f"dispatcher API: http://127.0.0.1:{args.api_port}/api/v1/alerts "
              f"(the bearer token is api.token in {stack.workdir / 'alerting.yaml'})")
        print(f"devices       : cityeye devices password SENSOR_ID --credentials {stack.credentials_path} "
              "(docs/devices.md)")
        print("waiting for alerts (Ctrl-C to stop)...", flush=True)

        async def main() -> int:
            stop = asyncio.Event()
            stop_on_signals(stop)
            if args.run_for:
                asyncio.get_running_loop().call_later(args.run_for, stop.set)
            rollover = BrokerRollover(BrokerRolloverSettings(max_rss_mib=args.rollover_max_rss_mib,
                                                             every_minutes=args.rollover_every_min))
            supervisor = asyncio.create_task(rollover.supervise(stack, stop))
            try:
                return await print_alerts(stop, stack, CASES_ORG)
            finally:
                stop.set()
                await supervisor

        count = asyncio.run(main())
        print(f"stopping: {count} alert event(s) in {time.monotonic() - started:.0f} s")
        if stack.cases_url:
            print_evaluation(stack.cases_url, load_org(CASES_ORG))
        return 1 if stack.dead_parts() else 0
    finally:
        stack.stop()
        summary = {"workdir": str(stack.workdir), "config": str(stack.config_path)}
        log.debug("stopped %s", json.dumps(summary))
