"""The embedded servers start and answer over real connections."""

import asyncio
import json
import os
import threading
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt_client
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cityeye.contracts import all_topics
from launch.prometheus_server import PrometheusServer
from launch.servers import free_port


def test_tansu_has_every_topic_with_its_partitions(kafka):
    async def check():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(list(all_topics()))
        finally:
            await admin.close()
        return {t["topic"]: len(t["partitions"]) for t in described}

    assert asyncio.run(check()) == all_topics()


def test_tansu_round_trip(kafka):
    async def round_trip():
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        await producer.send_and_wait("readings.weather", b"hello", key=b"s1")
        await producer.stop()
        consumer = AIOKafkaConsumer("readings.weather", bootstrap_servers=kafka.bootstrap,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 10)
        finally:
            await consumer.stop()
        return msg.key, msg.value

    assert asyncio.run(round_trip()) == (b"s1", b"hello")


def test_mqtt_broker_round_trip(mqtt):
    got = []
    subscribed, marker_back = threading.Event(), threading.Event()

    def on_message(client, userdata, message):
        got.append(message.payload)
        if message.payload == b"marker":
            marker_back.set()

    c = mqtt_client.Client(mqtt_client.CallbackAPIVersion.VERSION2)
    c.on_subscribe = lambda *args: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", mqtt.port)
    c.subscribe("t/#", qos=1)
    c.loop_start()
    try:
        assert subscribed.wait(5), "no SUBACK from the broker"
        c.publish("t/x", b"ping", qos=1).wait_for_publish(5)
        # a marker after the ping, on the same topic (delivered in order): once it is back, a
        # duplicate ping would be back too
        c.publish("t/x", b"marker", qos=1).wait_for_publish(5)
        assert marker_back.wait(5), f"the marker never came back; got {got}"
    finally:
        c.loop_stop()
        c.disconnect()
    assert got == [b"ping", b"marker"]


def test_the_mqtt_fixture_runs_mosquitto_unless_told_otherwise(mqtt):
    assert mqtt.name == os.environ.get("CITYEYE_TEST_MQTT", "mosquitto")


def test_influxd_write_and_query(influx_server, influx_db):
    body = b"probe,sensor=s1 value=1.5 1700000000000000000"
    req = urllib.request.Request(f"{influx_server.url}/write?db={influx_db}", data=body)
    with urllib.request.urlopen(req) as r:
        assert r.status == 204
    q = urllib.parse.urlencode({"db": influx_db, "q": "SELECT value FROM probe"})
    with urllib.request.urlopen(f"{influx_server.url}/query?{q}") as r:
        result = json.load(r)
    assert result["results"][0]["series"][0]["values"] == [["2023-11-14T22:13:20Z", 1.5]]


def test_free_port_never_hands_out_the_same_port_twice():
    from launch.servers import free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_server_whose_port_was_taken_retries_on_new_ports(tmp_path):
    import socket

    from launch.servers import InfluxServer, MosquittoServer

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    try:
        with MosquittoServer(port=taken, workdir=tmp_path / "mq") as mq:
            assert mq.port != taken
            socket.create_connection(("127.0.0.1", mq.port), timeout=2).close()
        influx = InfluxServer(workdir=tmp_path / "influx")
        influx.rpc_port = taken  # its second port collides: the start must still succeed
        with influx:
            assert influx.rpc_port != taken
            influx.create_database("probe")
    finally:
        squatter.close()


def test_a_prometheus_wait_that_times_out_says_which_target_failed_and_why(tmp_path):
    gone = free_port()  # nothing listens there
    with PrometheusServer({"cityeye-gone": [f"127.0.0.1:{gone}"]}, scrape_interval_s=1,
                          workdir=tmp_path / "prom") as prom:
        prom.wait_for('up{job="cityeye-gone"} == 0', timeout=30)  # scraped at least once
        with pytest.raises(TimeoutError) as raised:
            prom.wait_for('up{job="cityeye-gone"} == 1', timeout=1)
    message = str(raised.value)
    assert f"cityeye-gone http://127.0.0.1:{gone}/metrics: down" in message, message
    assert "connection refused" in message, message
