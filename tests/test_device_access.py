"""Device accounts on a real Mosquitto: the generated password and ACL files, TLS, client ids.

Each test starts its own Mosquitto on free loopback ports with the files
``cityeye devices export-acl`` writes for the demo city, and a TLS listener
whose certificates come from a test CA made with openssl.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import stat
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.config import MqttSettings, MqttTls, Settings
from alerts.notifiers import build_notifier
from cityeye.intake_progress import probe_topic
from cityeye.device_credentials import GATEWAY_ACCOUNT, NOTIFIER_ACCOUNT, MqttCredentials, load_or_create, read_credentials
from cityeye.errors import ConfigError, DeliveryError
from cityeye.sensor_registry import load_registry
from ingest.bridge import MqttBridge
from ingest.device_access import (DEFAULT_TOPIC_TEMPLATE, SENML_TOPIC_TEMPLATE, acl_file, broker_auth_conf,
                                  export_broker_files)
from ingest.mapping import SHIPPED_MAPPINGS, load_mapping
from launch.cli import main as cli_main
from launch.embedded import EmbeddedStack
from launch.servers import MosquittoServer, MosquittoTls
from simulators import DEMO_REGISTRY
from simulators.simulation import run_simulation
from tests.notify_helpers import sample_notification
from tests.tls_helpers import CertAuthority

REGISTRY = load_registry(DEMO_REGISTRY)
OWN, OTHER = REGISTRY.by_kind("water_level")[:2]


def topic_of(sensor) -> str:
    return f"cityeye/{sensor.district}/{sensor.kind}/{sensor.id}"


def reading(value: float = 1.0) -> bytes:
    return json.dumps({"ts": "2026-07-01T12:00:00Z", "values": {"level_m": value}}).encode()


class Broker:
    """A Mosquitto with the demo city's accounts (and a TLS listener), and its credentials."""

    def __init__(self, tmp: Path, require_certificate: bool = False) -> None:
        self.creds, _ = load_or_create(tmp / "mqtt-credentials.yaml", [s.id for s in REGISTRY])
        files = export_broker_files(REGISTRY, self.creds, tmp / "broker", [DEFAULT_TOPIC_TEMPLATE, SENML_TOPIC_TEMPLATE],
                                    [load_mapping(path) for path in SHIPPED_MAPPINGS])
        self.ca = CertAuthority.create(tmp / "ca")
        cert, key = self.ca.issue("broker", "127.0.0.1", server=True)
        self.server = MosquittoServer(workdir=tmp / "mosquitto",
                                      extra_conf=broker_auth_conf(files.password_path, files.acl_path),
                                      tls=MosquittoTls(self.ca.cert, cert, key, require_certificate))

    def client(self, username: str | None, client_id: str = "", password: str | None = None, tls: bool = False,
               cert: tuple[Path, Path] | None = None) -> "Client":
        if username and password is None:
            password = self.creds.password(username).get_secret_value()
        return Client(self, username, password, client_id, tls, cert)


class Client:
    """A paho client that records the CONNACK and every message it receives."""

    def __init__(self, broker: Broker, username, password, client_id, tls, cert) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack = None
        self._answered = threading.Event()  # a CONNACK, or the broker closed the connection (a refused TLS client)
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if username:
            self.c.username_pw_set(username, password)
        if tls or cert:
            self.c.tls_set(ca_certs=str(broker.ca.cert), certfile=cert and str(cert[0]), keyfile=cert and str(cert[1]))
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect  # without a CONNACK: refused before MQTT (TLS)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        port = broker.server.tls_port if (tls or cert) else broker.server.port
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self._answered.wait(10)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code
        self._answered.set()

    def _on_disconnect(self, *args) -> None:
        self._answered.set()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def received(self, timeout: float) -> list[tuple[str, bytes]]:
        out, deadline = [], time.monotonic() + timeout
        while True:
            try:
                out.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.server.start()
    yield b
    b.server.cleanup()


@pytest.fixture
def gateway(broker):
    gw = broker.client(GATEWAY_ACCOUNT, client_id="cityeye-gateway")
    assert gw.accepted
    gw.subscribe("cityeye/#")
    yield gw
    gw.close()


def test_a_device_publishes_its_own_topic_only(broker, gateway):
    device = broker.client(OWN.id)
    assert device.accepted
    device.publish(topic_of(OTHER), reading(9.9))          # spoofing another gauge
    device.publish(f"cityeye/{OWN.district}/traffic/{OWN.id}", reading(9.9))  # its id, another kind
    device.publish(topic_of(OWN), reading(1.0))             # its own: delivered, and after the refused ones
    got = gateway.received(2.0)
    assert got == [(topic_of(OWN), reading(1.0))]
    device.close()


def test_a_device_publishes_its_senml_and_mapping_topics_only(broker, gateway):
    for mapping_filter in ("acme/gauge/+/up", "loopcount/+/+"):  # the gateway's account reads the mappings' topics
        gateway.subscribe(mapping_filter)
    device = broker.client(OWN.id)
    for spoof in (f"cityeye/{OTHER.district}/senml/{OTHER.id}", f"acme/gauge/{OTHER.id}/up",
                  "loopcount/jingan/lc4-17"):  # another gauge's SenML and mapping topics, another kind's mapping
        device.publish(spoof, b"[]")
    own = [f"cityeye/{OWN.district}/senml/{OWN.id}", f"acme/gauge/{OWN.id}/up"]
    for topic in own:
        device.publish(topic, b"[]")
    assert [t for t, _ in gateway.received(2.0)] == own
    device.close()


def test_anonymous_and_wrong_password_clients_cannot_connect(broker):
    anonymous = broker.client(None, client_id="anon")
    wrong = broker.client(OWN.id, password="not-the-password-at-all")
    assert not anonymous.accepted and not wrong.accepted
    assert anonymous.connack is not None and wrong.connack is not None  # refused, not timed out
    anonymous.close()
    wrong.close()


def test_a_device_subscribing_to_everything_receives_nothing(broker, gateway):
    snoop = broker.client(OTHER.id)
    snoop.subscribe("#")
    snoop.subscribe("cityeye/+/+/+")
    device = broker.client(OWN.id)
    device.publish(topic_of(OWN), reading(2.0))
    assert gateway.received(1.5) == [(topic_of(OWN), reading(2.0))]
    assert snoop.received(0.5) == []
    for c in (snoop, device):
        c.close()


async def test_the_gateway_reads_back_its_intake_probe_and_devices_cannot_write_there(broker):
    """The ACL lets the gateway's account publish its probe and read it back (ingest/intake_probe.py);
    a device's probe on the gateway's topic is refused, so no device can claim the intake is complete."""
    settings = MqttSettings(port=broker.server.port, username=GATEWAY_ACCOUNT,
                            password=broker.creds.password(GATEWAY_ACCOUNT), client_id="cityeye-gateway",
                            topic_filters=["cityeye/#"])
    topic = probe_topic(settings.client_id)
    bridge = MqttBridge(settings, asyncio.get_running_loop(), own_filters=[topic])
    await bridge.start()
    try:
        device = broker.client(OWN.id)
        device.publish(topic, b"9999999999.0")
        bridge.publish(topic, b"1800000000.5")
        [item] = await asyncio.wait_for(bridge.take(10), 5)
        bridge.ack(item)
        assert (item.topic, item.payload) == (topic, b"1800000000.5")
        await asyncio.sleep(1.0)
        assert bridge.pending() == 0  # the device's was dropped by the broker
        device.close()
    finally:
        await bridge.stop()


async def test_the_gateway_session_cannot_be_taken_over(broker, tmp_path):
    """The gateway's real bridge holds its persistent session while others try its client id."""
    settings = MqttSettings(port=broker.server.port, username=GATEWAY_ACCOUNT,
                            password=broker.creds.password(GATEWAY_ACCOUNT), client_id="cityeye-gateway",
                            topic_filters=["cityeye/#"])
    bridge = MqttBridge(settings, asyncio.get_running_loop())
    await bridge.start()
    assert bridge.connected.is_set()
    try:
        anonymous = broker.client(None, client_id="cityeye-gateway")
        assert not anonymous.accepted
        # a device with its own account asking for the gateway's id is given its own id instead
        intruder = broker.client(OTHER.id, client_id="cityeye-gateway")
        assert intruder.accepted
        device = broker.client(OWN.id)
        for i in range(20):
            device.publish(topic_of(OWN), reading(float(i)))
        got = []
        while len(got) < 20:
            [item] = await asyncio.wait_for(bridge.take(1), 5)
            got.append(item.payload)
            bridge.ack(item)
        assert got == [reading(float(i)) for i in range(20)]
        assert bridge.connected.is_set() and bridge.client.is_connected()
        for c in (anonymous, intruder, device):
            c.close()
    finally:
        await bridge.stop()


async def test_gateway_bridge_over_tls(broker):
    settings = MqttSettings(port=broker.server.tls_port, username=GATEWAY_ACCOUNT,
                            password=broker.creds.password(GATEWAY_ACCOUNT), topic_filters=["cityeye/#"],
                            tls=MqttTls(enabled=True, ca_file=str(broker.ca.cert)))
    bridge = MqttBridge(settings, asyncio.get_running_loop())
    await bridge.start()
    try:
        assert bridge.connected.is_set()
        device = broker.client(OWN.id, tls=True)
        assert device.accepted
        device.publish(topic_of(OWN), reading(3.0))
        [item] = await asyncio.wait_for(bridge.take(1), 5)
        assert (item.topic, item.payload) == (topic_of(OWN), reading(3.0))
        bridge.ack(item)
        device.close()
    finally:
        await bridge.stop()


def test_client_certificates_identify_devices(tmp_path):
    broker = Broker(tmp_path, require_certificate=True)
    with broker.server:
        gateway = broker.client(None, cert=broker.ca.issue("gateway", GATEWAY_ACCOUNT))
        assert gateway.accepted
        gateway.subscribe("cityeye/#")
        device = broker.client(None, cert=broker.ca.issue("device", OWN.id))
        assert device.accepted
        device.publish(topic_of(OTHER), reading(9.0))
        device.publish(topic_of(OWN), reading(4.0))
        assert gateway.received(1.5) == [(topic_of(OWN), reading(4.0))]
        no_cert = broker.client(OWN.id, tls=True)
        assert not no_cert.accepted
        stranger_ca = CertAuthority.create(tmp_path / "stranger")
        forged = broker.client(None, cert=stranger_ca.issue("forged", GATEWAY_ACCOUNT))
        assert not forged.accepted
        for c in (gateway, device, no_cert, forged):
            c.close()


def test_credentials_file_is_private_kept_and_refused_when_readable(tmp_path):
    path = tmp_path / "creds.yaml"
    creds, added = load_or_create(path, ["a-1", "b-2"])
    assert added == 4 and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, added_again = load_or_create(path, ["a-1", "b-2", "c-3"])
    assert added_again == 1
    assert again.devices["a-1"].get_secret_value() == creds.devices["a-1"].get_secret_value()
    assert "c-3" in read_credentials(path).devices
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_credentials(path)
    os.chmod(path, 0o600)
    path.write_text("devices: {a-1: short}\n")
    with pytest.raises(ConfigError, match="12 characters") as err:
        read_credentials(path)
    assert "short" not in str(err.value)


def test_acl_lists_each_device_topic_and_extra_templates():
    text = acl_file(REGISTRY, ["cityeye/{district}/{kind}/{sensor_id}", "cityeye/senml/{sensor_id}"])
    block = text.split(f"user {OWN.id}\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [f"topic write {topic_of(OWN)}", f"topic write cityeye/senml/{OWN.id}"]
    assert "topic read cityeye/#" in text.split("user cityeye-gateway\n", 1)[1].split("\n\n", 1)[0]
    assert text.count("topic read") == 3  # the gateway's cityeye/#, /cityeye/# and its intake probes
    assert "topic write cityeye-intake/+/probe" in text.split("user cityeye-gateway\n", 1)[1].split("\n\n", 1)[0]
    with pytest.raises(ConfigError, match="without wildcards"):
        acl_file(REGISTRY, ["cityeye/+/{sensor_id}"])


def test_export_acl_command_writes_hashed_files_and_never_prints_a_password(tmp_path, capsys, caplog):
    creds_path, out = tmp_path / "creds.yaml", tmp_path / "broker"
    assert cli_main(["devices", "export-acl", "--credentials", str(creds_path), "--out", str(out)]) == 0
    creds: MqttCredentials = read_credentials(creds_path)
    printed = capsys.readouterr().out + caplog.text
    passwd = (out / "mosquitto.passwd").read_text()
    for password in [*creds.devices.values(), *creds.services.values()]:
        assert password.get_secret_value() not in printed + passwd
    assert len(passwd.splitlines()) == len(REGISTRY) + 2
    assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd.splitlines())
    assert stat.S_IMODE((out / "mosquitto.passwd").stat().st_mode) == 0o600
    assert cli_main(["devices", "password", OWN.id, "--credentials", str(creds_path)]) == 0
    assert capsys.readouterr().out.strip() == creds.devices[OWN.id].get_secret_value()


def test_embedded_stack_broker_has_device_accounts_and_private_files(tmp_path):
    stack = EmbeddedStack(tmp_path / "run", with_influx=False)
    try:
        settings = stack.start_servers()
        stack.write_alerting_config()
        for path in (stack.config_path, stack.credentials_path, tmp_path / "run" / "alerting.yaml"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert settings.mqtt.username == GATEWAY_ACCOUNT and settings.mqtt.password is not None
        creds = read_credentials(settings.mqtt.device_credentials)
        assert set(creds.devices) == {s.id for s in REGISTRY}

        def connack(username, password):
            c = paho.Client(CallbackAPIVersion.VERSION2, client_id="probe", protocol=paho.MQTTv311)
            got = threading.Event()
            result = []
            c.on_connect = lambda *a: (result.append(a[3]), got.set())
            if username:
                c.username_pw_set(username, password)
            c.connect("127.0.0.1", settings.mqtt.port)
            c.loop_start()
            got.wait(10)
            c.disconnect()
            c.loop_stop()
            return result[0]

        assert connack(None, None).is_failure
        assert not connack(OWN.id, creds.devices[OWN.id].get_secret_value()).is_failure

        # with InfluxDB off and no webhook.url there is no sink: the sinks process is not started
        # (it would exit at once with "no sink enabled"); every other part is
        spawned = []
        stack._spawn = lambda name, args, env=None: spawned.append(name)
        stack.start_services()
        assert spawned == ["gateway", "worker", "dispatcher"]
    finally:
        stack.stop()


async def test_simulator_publishes_each_device_with_its_own_account(broker, gateway, tmp_path):
    creds_path = tmp_path / "mqtt-credentials.yaml"
    settings = Settings(mqtt=MqttSettings(port=broker.server.port, device_credentials=str(creds_path)),
                        registry=str(DEMO_REGISTRY))
    result = await run_simulation(settings, REGISTRY, speed=0, scenario="flood", seed=3, duration_h=0.5)
    got = gateway.received(2.0)
    while len(got) < result.messages_published:
        more = gateway.received(2.0)
        if not more:
            break
        got += more
    assert result.messages_published > len(REGISTRY) and len(got) == result.messages_published
    assert {t.rsplit("/", 1)[-1] for t, _ in got} == {s.id for s in REGISTRY}


async def test_mqtt_notifier_publishes_with_its_own_account_over_tls(broker, gateway):
    notifier = build_notifier({
        "name": "ops-mqtt", "type": "mqtt", "host": "127.0.0.1", "port": broker.server.tls_port,
        "username": NOTIFIER_ACCOUNT, "password": broker.creds.password(NOTIFIER_ACCOUNT).get_secret_value(),
        "tls": {"enabled": True, "ca_file": str(broker.ca.cert)}, "timeout_s": 5})
    try:
        await notifier.send(sample_notification())
    finally:
        await notifier.close()
    got = await asyncio.to_thread(gateway.received, 2.0)
    assert got and all(topic.startswith("cityeye/out/") for topic, _ in got)
    untrusted = build_notifier({
        "name": "no-ca", "type": "mqtt", "host": "127.0.0.1", "port": broker.server.tls_port,
        "username": NOTIFIER_ACCOUNT, "password": "x" * 20, "tls": True, "timeout_s": 2})
    with pytest.raises(DeliveryError):  # the test CA is not among the system's CAs
        await untrusted.send(sample_notification())
    await untrusted.close()
