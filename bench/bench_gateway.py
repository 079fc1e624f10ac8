"""Gateway throughput (MQTT -> Kafka) beside a raw paho subscriber, same run, same broker.

Starts its own Mosquitto and Tansu (launch.servers), creates two
persistent QoS 1 sessions (a bare paho subscriber and the gateway), queues
``--count`` readings for both while they are offline, then lets each drain
its queue and times it:

* raw paho: QoS 1 subscriber with automatic acks, no processing at all;
* gateway: validation, Kafka produce (acks=all), manual MQTT acks after Kafka.

The gateway aggregates the readings of each Kafka partition into one record
(cityeye/reading_records.py); ``--aggregate 1`` writes one record per reading
(the format before aggregation). ``--protocol 5`` runs the gateway's session
on MQTT 5 (its Receive Maximum, ``mqtt.receive_maximum``, sets the broker's
in-flight window; with 3.1.1 Mosquitto's ``max_inflight_messages``, 100 here,
does).

Prints readings/s for both and their ratio; asserts nothing about time.
Run: ``.venv/bin/python bench/bench_gateway.py --count 50000`` (``--quick``: 20 k).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cityeye.config import IngestSettings, KafkaSettings, MqttSettings, Settings
from cityeye.contracts import format_ts, mqtt_topic, readings_topic
from cityeye.reading_records import readings_in
from cityeye.kafka import ensure_topics
from cityeye.sensor_registry import load_registry
from launch.servers import TansuServer, mqtt_server
from ingest.gateway import Gateway
from ingest.readback import read_until
from simulators.publisher import MqttPublisher

REGISTRY = Path(__file__).resolve().parent.parent / "simulators" / "demo_registry.yaml"
RAW_ID = "bench-raw-subscriber"


def raw_client(port: int, on_message=None) -> tuple[mqtt.Client, threading.Event]:
    subscribed = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=RAW_ID, clean_session=False)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("cityeye/+/+/+", qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    if on_message:
        client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    return client, subscribed


def raw_rate(port: int, count: int) -> float:
    """Messages/s for a bare paho QoS 1 subscriber draining ``count`` queued messages."""
    done = threading.Event()
    seen = [0, 0.0]

    def on_message(client, userdata, message):
        seen[0] += 1
        if seen[0] == count:
            seen[1] = time.perf_counter()
            done.set()

    t0 = time.perf_counter()
    client, _ = raw_client(port, on_message)
    done.wait(600)
    client.disconnect()
    client.loop_stop()
    return count / (seen[1] - t0)


async def gateway_rate(settings: Settings, count: int) -> tuple[float, float, dict]:
    """Readings/s of the gateway draining ``count`` queued messages, the CPU seconds this process
    spent per reading meanwhile (every thread: paho's and the loop's), and its counters."""
    gateway = Gateway(settings, load_registry(REGISTRY))
    t0, cpu0 = time.perf_counter(), time.process_time()
    await gateway.start()
    while gateway.stats()["messages"] < count:
        await asyncio.sleep(0.005)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = gateway.stats()
    await gateway.stop()
    return count / elapsed, cpu / count, stats


def payloads(count: int) -> list[tuple[str, bytes]]:
    t0 = time.time() - count  # one reading a second, all in the past
    sensors = [("huangpu", "wl-huangpu-01"), ("minhang", "wl-minhang-01")]
    out = []
    for i in range(count):
        district, sensor = sensors[i % 2]
        body = {"ts": format_ts(t0 + i), "values": {"level_m": round(2.0 + (i % 500) / 1000, 3)}}
        out.append((mqtt_topic(district, "water_level", sensor), json.dumps(body, separators=(",", ":")).encode()))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50000, help="readings to push through (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="20 k readings")
    parser.add_argument("--aggregate", type=int, default=500, help="ingest.aggregate_max_readings (1: single records)")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1", help="the gateway's MQTT protocol")
    args = parser.parse_args()
    if args.quick:
        args.count = min(args.count, 20_000)

    with tempfile.TemporaryDirectory(prefix="cityeye-bench-") as tmp:
        broker = mqtt_server(workdir=Path(tmp) / "mqtt").start()
        tansu = TansuServer(workdir=Path(tmp) / "tansu").start()
        try:
            settings = Settings(kafka=KafkaSettings(bootstrap=tansu.bootstrap, profile="tansu"),
                                mqtt=MqttSettings(port=broker.port, client_id="bench-gateway", protocol=args.protocol),
                                ingest=IngestSettings(aggregate_max_readings=args.aggregate),
                                registry=str(REGISTRY))
            await ensure_topics(settings.kafka)
            # create both persistent sessions, then go offline so the broker queues for them
            client, _ = raw_client(broker.port)
            client.disconnect()
            client.loop_stop()
            gw = Gateway(settings, load_registry(REGISTRY))
            await gw.start()
            await gw.stop()

            t0 = time.perf_counter()
            with MqttPublisher(settings.mqtt, max_inflight=1000) as pub:
                for topic, body in payloads(args.count):
                    pub.publish(topic, body)
                pub.flush(600)
            publish_rate = args.count / (time.perf_counter() - t0)

            raw = await asyncio.to_thread(raw_rate, broker.port, args.count)
            rate, cpu_per_reading, stats = await gateway_rate(settings, args.count)
            topic = readings_topic("water_level")
            got = await read_until(settings.kafka, [topic], lambda o: len(readings_in(o[topic])) >= args.count,
                                   timeout=120)
        finally:
            tansu.cleanup()
            broker.cleanup()

    load = os.getloadavg()
    print(f"load average                 : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    print(f"readings                     : {args.count} (~{len(payloads(1)[0][1])} B JSON each)")
    print(f"publisher (paho QoS 1)       : {publish_rate:10.0f} msg/s")
    print(f"raw paho subscriber (QoS 1)  : {raw:10.0f} msg/s  (drain of a queued persistent session)")
    print(f"gateway MQTT -> Kafka        : {rate:10.0f} readings/s  ({rate / raw:.0%} of raw paho; "
          f"MQTT {args.protocol}, aggregate <= {args.aggregate}; target >= 30,000: {'met' if rate >= 30_000 else 'NOT met'})")
    print(f"gateway CPU per reading      : {cpu_per_reading * 1e6:10.1f} us  (this process, all threads; "
          f"{cpu_per_reading * rate:.0%} of one core while draining)")
    readings = readings_in(got[topic])
    distinct = {(r.sensor_id, r.ts) for r in readings}
    print(f"in Kafka afterwards          : {len(got[topic])} records, {len(readings)} readings, {len(distinct)} distinct "
          f"(of {args.count}); gateway counters {stats}")


if __name__ == "__main__":
    asyncio.run(main())
