"""Real servers for the tests, each on a free loopback port.

* ``kafka`` -- a fresh Tansu broker per test (it starts in milliseconds), with
  every CityEye topic pre-created; ``kafka.settings`` is a ready
  :class:`~cityeye.config.KafkaSettings` (profile ``tansu``).
* ``mqtt`` -- a fresh Mosquitto per test; amqtt only when chosen explicitly
  with ``CITYEYE_TEST_MQTT=amqtt`` (``mqtt_broker`` is the chosen class).
* ``influx`` -- one InfluxDB 1.x server per session; ``influx_db`` gives each
  test its own database.
* ``settings`` -- :class:`~cityeye.config.Settings` wired to the above.

A missing server binary is an error, never a skip: the README's test
command installs everything these fixtures need.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from cityeye.config import InfluxSettings, KafkaSettings, MqttSettings, Settings
from cityeye.kafka import ensure_topics
from cityeye.sensor_registry import set_default_registry
from launch.servers import AmqttServer, InfluxServer, ManagedServer, MosquittoServer, TansuServer
from simulators import DEMO_REGISTRY

REPO = Path(__file__).resolve().parent.parent

#: in-process parts given no registry use the demo city's, as under the `cityeye` command line
set_default_registry(DEMO_REGISTRY)


@pytest.fixture
def kafka(tmp_path):
    server = TansuServer(workdir=tmp_path / "tansu")
    server.start()
    server.settings = KafkaSettings(bootstrap=server.bootstrap, profile="tansu",
                                    consumer_group_prefix=f"t{uuid.uuid4().hex[:6]}")
    asyncio.run(ensure_topics(server.settings))
    yield server
    server.cleanup()


#: the MQTT brokers the tests can run on, by their CITYEYE_TEST_MQTT name
MQTT_BROKERS: dict[str, type[ManagedServer]] = {"mosquitto": MosquittoServer, "amqtt": AmqttServer}


@pytest.fixture(scope="session")
def mqtt_broker() -> type[ManagedServer]:
    """Mosquitto, or the broker named by ``CITYEYE_TEST_MQTT``; never a silent fallback."""
    choice = os.environ.get("CITYEYE_TEST_MQTT", "mosquitto")
    if choice not in MQTT_BROKERS:
        pytest.fail(f"CITYEYE_TEST_MQTT={choice!r}: expected one of {sorted(MQTT_BROKERS)}", pytrace=False)
    if choice == "mosquitto" and not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.fail("Mosquitto is not installed: the MQTT tests run on it (scripts/bootstrap test installs it); "
                    "set CITYEYE_TEST_MQTT=amqtt to run them on the pure-Python amqtt broker instead",
                    pytrace=False)
    return MQTT_BROKERS[choice]


@pytest.fixture
def mqtt(mqtt_broker, tmp_path):
    server = mqtt_broker(workdir=tmp_path / "mqtt")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory):
    server = InfluxServer(workdir=tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def influx_db(influx_server):
    name = f"t_{uuid.uuid4().hex[:10]}"
    influx_server.create_database(name)
    return name


@pytest.fixture
def settings(kafka, mqtt, tmp_path) -> Settings:
    return Settings(
        kafka=kafka.settings,
        mqtt=MqttSettings(port=mqtt.port, client_id=f"gw-{uuid.uuid4().hex[:6]}"),
        influx=InfluxSettings(enabled=False),
        registry=str(DEMO_REGISTRY),
        state_dir=str(tmp_path / "state"),
    )


@pytest.fixture
def influx_settings(influx_server, influx_db) -> InfluxSettings:
    """v1 ``/write`` API settings for this test's own database."""
    return InfluxSettings(enabled=True, api="v1", url=influx_server.url, database=influx_db,
                          batch_size=50, flush_interval_s=0.2)
