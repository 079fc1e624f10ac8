"""The embedded MQTT brokers: Mosquitto (``mosquitto -c FILE``, optionally with TLS), or amqtt where it is missing."""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from cityeye.config import MqttSettings
from launch.managed_server import ManagedServer, free_port, wait_for_port

__all__ = ["MosquittoTls", "MosquittoServer", "AmqttServer", "mqtt_server"]

log = logging.getLogger("launch.servers")  # the embedded servers' one logger, as before the split

#: messages Mosquitto keeps in flight to an MQTT 3.1.1 client: the gateway's default Receive Maximum
GATEWAY_IN_FLIGHT = MqttSettings.model_fields["receive_maximum"].default


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
            # MQTT 3.1.1 clients (the gateway by default) get the same window in flight as an MQTT 5 gateway
            # announces (receive_maximum): the gateway acknowledges only after Kafka, so this window bounds
            # the messages it forwards per Kafka round trip
            f"max_inflight_messages {GATEWAY_IN_FLIGHT}\n"
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
