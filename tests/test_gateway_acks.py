"""The gateway's MQTT acknowledgements: in order, one write per batch, never before Kafka has the reading.

The pipeline runs here with a stand-in producer whose acknowledgements the
test gives out of order, and a stand-in bridge that records the acks; the
bridge's batched PUBACKs and the chunked socket under paho are checked on
their own (the end-to-end behaviour on a real Mosquitto and Tansu is in
test_gateway.py and test_gateway_scale_out.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cityeye.config import IngestSettings, MqttSettings, Settings
from cityeye.contracts import format_ts, mqtt_topic
from cityeye.reading_records import readings_of
from cityeye.sensor_registry import load_registry
from ingest.bridge import Inbound, MqttBridge, puback_frames
from ingest.gateway import Gateway
from ingest.paho_buffered import CHUNK, BufferedClient, ChunkedSocket

REGISTRY = Path(__file__).resolve().parent.parent / "simulators" / "demo_registry.yaml"
TOPIC = mqtt_topic("huangpu", "water_level", "wl-huangpu-01")


class _Producer:
    """Records every send; the test resolves each record's acknowledgement when it likes."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, asyncio.Future]] = []

    async def send(self, topic, value, key=None, partition=None, headers=None):
        future = asyncio.get_running_loop().create_future()
        self.sent.append((value, future))
        return future

    async def partitions_for(self, topic):
        return set(range(8))


class _Bridge:
    """Hands out the batches it is given; records what is acknowledged, in order."""

    def __init__(self, batches: list[list[Inbound]]) -> None:
        self.batches = batches
        self.acked: list[int] = []
        self.unacked = 0

    async def take(self, most: int, linger: float = 0.0) -> list[Inbound]:
        if not self.batches:
            await asyncio.Event().wait()
        return self.batches.pop(0)

    def ack_all(self, items: list[Inbound]) -> None:
        self.acked += [item.mid for item in items]


def _message(mid: int) -> Inbound:
    body = json.dumps({"ts": format_ts(time.time() - 60 + mid), "values": {"level_m": 2.0 + mid / 1000}})
    return Inbound(TOPIC, body.encode(), mid, 1, 1, time.time())


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_acks_wait_for_kafka_and_keep_arrival_order_with_batches_in_flight():
    settings = Settings(registry=str(REGISTRY), ingest=IngestSettings(produce_window=4))
    gateway = Gateway(settings, load_registry(REGISTRY))
    producer, bridge = _Producer(), _Bridge([[_message(1), _message(2)], [_message(3)], [_message(4), _message(5)]])
    gateway._producer, gateway._bridge = producer, bridge
    gateway._batches, gateway._window = asyncio.Queue(), asyncio.Semaphore(settings.ingest.produce_window)
    tasks = [asyncio.create_task(gateway._intake()), asyncio.create_task(gateway._acker())]
    try:
        await _until(lambda: len(producer.sent) == 3)  # all three batches produced before any Kafka ack
        assert bridge.acked == []
        for _, future in producer.sent[1:]:  # Kafka acknowledges the later batches first
            future.set_result(None)
        await asyncio.sleep(0.05)
        assert bridge.acked == [], "a message was acknowledged before Kafka had the batch before it"
        producer.sent[0][1].set_result(None)
        await _until(lambda: len(bridge.acked) == 5)
        assert bridge.acked == [1, 2, 3, 4, 5]
        assert gateway.stats()["accepted"] == 5
        stored = [r.values["level_m"] for value, _ in producer.sent for r in readings_of(value, None, [("cityeye-agg", b"1")])]
        assert stored == [2.001, 2.002, 2.003, 2.004, 2.005]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _PahoRecorder:
    """What the bridge hands paho: queued packets and single acks."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.acks: list[tuple[int, int]] = []

    def _packet_queue(self, command, packet, mid, qos, info=None):
        self.packets.append(bytes(packet))

    def ack(self, mid: int, qos: int):
        self.acks.append((mid, qos))


async def test_a_batch_of_acks_is_one_write_of_its_pubacks_in_order():
    bridge = MqttBridge(MqttSettings(), asyncio.get_running_loop(), max_unacked=10)
    recorder = bridge.client = _PahoRecorder()
    bridge._generation, bridge._unacked = 2, 6
    items = [Inbound("t", b"", 7, 1, 2, 0.0), Inbound("t", b"", 3, 1, 1, 0.0),  # older connection: skipped
             Inbound("t", b"", 65535, 1, 2, 0.0), Inbound("t", b"", 9, 0, 2, 0.0),  # QoS 0: nothing to ack
             Inbound("t", b"", 11, 2, 2, 0.0), Inbound("t", b"", 1, 1, 2, 0.0)]
    bridge.ack_all(items)
    assert recorder.packets == [puback_frames([7, 65535, 1])]
    assert recorder.packets[0] == bytes([0x40, 2, 0, 7, 0x40, 2, 0xFF, 0xFF, 0x40, 2, 0, 1])
    assert recorder.acks == [(11, 2)]  # QoS 2 completes through paho (PUBCOMP)
    assert bridge.unacked == 0


def test_the_chunked_socket_hands_out_small_pieces_of_large_reads():
    left, right = socket.socketpair()
    try:
        packets = [struct.pack("!BB", 0x30, 5) + b"a/b" + struct.pack("!H", i) for i in range(10000)]
        data = b"".join(packets)
        right.sendall(data[:CHUNK + 100])
        sock = ChunkedSocket(left)
        assert sock.recv(1) == b"\x30" and sock.pending() == CHUNK - 1  # one recv took a whole chunk
        got = [b"\x30"]
        while sock.pending():
            got.append(sock.recv(7))
        assert b"".join(got) == data[:CHUNK]
        assert sock.recv(1000) == data[CHUNK:CHUNK + 100] and sock.pending() == 0
        left.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing held and nothing on the wire: paho's "try later"
            sock.recv(1)
        assert sock.fileno() == left.fileno()
        right.close()
        assert sock.recv(1) == b""  # the broker closed the connection
    finally:
        left.close()


def test_the_buffered_client_reads_through_a_chunked_socket():
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        client._host, client._port = "127.0.0.1", listener.getsockname()[1]
        sock = client._create_socket()
        assert isinstance(sock, ChunkedSocket)
        sock.close()
    finally:
        listener.close()


def _publish_packet(topic: bytes, mid: int, payload: bytes, properties: bytes | None) -> bytes:
    """A PUBLISH's variable header and payload (``properties`` None: MQTT 3.1.1, else MQTT 5's, length first)."""
    props = b"" if properties is None else bytes([len(properties)]) + properties
    return struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + props + payload


@pytest.mark.parametrize("protocol, properties", [(mqtt.MQTTv311, None), (mqtt.MQTTv5, b""),
                                                  (mqtt.MQTTv5, b"\x01\x01")])  # payload format indicator
@pytest.mark.parametrize("header", [0x32, 0x3B])  # QoS 1; QoS 1 with dup and retain
def test_the_buffered_client_decodes_a_publish_as_paho_does(protocol, properties, header):
    packet = _publish_packet(TOPIC.encode(), 4097, b'{"ts": 1, "values": {}}', properties)
    got = []
    for cls in (mqtt.Client, BufferedClient):
        client = cls(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
        client.on_message = lambda c, u, m: got.append(m)
        client._in_packet = {"command": header, "packet": packet}
        assert client._handle_publish() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    paho_message, ours = got
    for attr in ("topic", "payload", "mid", "qos", "dup", "retain"):
        assert getattr(ours, attr) == getattr(paho_message, attr), attr
    if protocol == mqtt.MQTTv5:
        assert ours.properties.json() == paho_message.properties.json()
        assert hasattr(ours.properties, "PayloadFormatIndicator") == bool(properties)


def _framed(header: int, body: bytes) -> bytes:
    """An MQTT packet: first byte, remaining length (1 to 4 bytes), body."""
    length, out = len(body), bytearray([header])
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + body


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_the_buffered_client_hands_over_runs_of_qos1_publishes_and_leaves_the_rest_to_paho(protocol):
    v5 = protocol == mqtt.MQTTv5
    props = b"" if v5 else None

    def publish(mid: int, payload: bytes = b'{"v": 1}', header: int = 0x32, properties=props) -> bytes:
        return _framed(header, _publish_packet(TOPIC.encode(), mid, payload, properties))

    big = b"x" * 300  # a remaining length of two bytes
    stream = (publish(1) + publish(2, big) + publish(3, header=0x3B)  # a run (DUP and RETAIN set on the third)
              + _framed(0x40, struct.pack("!H", 77))  # a PUBACK: paho's
              + publish(4) + (publish(5, properties=b"\x01\x01") if v5  # paho's
                                   else _framed(0x30, struct.pack("!H", len(TOPIC)) + TOPIC.encode() + b'{"v": 1}'))
              + publish(6) + publish(7))
    cut = len(stream) - 5  # the last packet arrives in two pieces
    runs, singles = [], []
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol, manual_ack=True)
    client.on_publishes = lambda c, publishes: runs.append(publishes)
    client.on_message = lambda c, u, m: singles.append((m.mid, m.qos, m.payload))
    left, right = socket.socketpair()
    try:
        left.setblocking(False)
        client._sock = ChunkedSocket(left)
        right.sendall(stream[:cut])
        for _ in range(20):
            client.loop_read()
        right.sendall(stream[cut:])
        for _ in range(20):
            client.loop_read()
    finally:
        left.close()
        right.close()
    topic = TOPIC.encode()
    # paho reads the first packet of a fresh chunk (its first recv fills the chunk) and the one the
    # chunk's end cut; the runs in between come decoded at once, in order, up to a packet paho must read
    assert runs == [[(topic, 2, big), (topic, 3, b'{"v": 1}')], [(topic, 4, b'{"v": 1}')], [(topic, 6, b'{"v": 1}')]]
    assert singles == [(1, 1, b'{"v": 1}'), ((5, 1) if v5 else (0, 0)) + (b'{"v": 1}',), (7, 1, b'{"v": 1}')]
