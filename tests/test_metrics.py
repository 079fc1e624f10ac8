"""What the metrics count, read back over HTTP from a real exposition server.

Every test serves the process's registry on a free port (``start_metrics``,
as the commands do), does real work on real servers (Mosquitto, Tansu, an
HTTP receiver) and compares the scraped values before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
import urllib.request

import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.notifiers import build_notifier
from alerts.pipeline.dispatch_engine import Engine
from alerts.runtime.delivery import DeliveryManager
from alerts.runtime.store import Store
from cityeye.config import MetricsSettings
from cityeye.consume import consume
from cityeye.contracts import TOPIC_ALERTS, format_ts, mqtt_topic
from cityeye.kafka import make_consumer, make_producer
from cityeye.metrics import LATENCY_BUCKETS, BatchHistogram, start_metrics
from cityeye.sensor_registry import load_registry
from ingest import command as gateway_command
from ingest.gateway import Gateway
from launch.servers import free_port
from simulators.publisher import MqttPublisher
from tests.alerting_helpers import Receiver, config, event

WL_TOPIC = mqtt_topic("huangpu", "water_level", "wl-huangpu-01")


@pytest.fixture(scope="module")
def metrics_url() -> str:
    """This test process's metrics, served once on a free port."""
    port = start_metrics(MetricsSettings(port=free_port()), "tests")
    return f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition at ``url``: ``(name, labels) -> value``."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def ascrape(url: str) -> dict:
    return await asyncio.to_thread(scrape, url)


def test_metrics_port_zero_serves_nothing_and_a_port_serves_the_registry(metrics_url):
    assert start_metrics(MetricsSettings(), "off") is None
    samples = scrape(metrics_url)
    assert sample(samples, "cityeye_process_info", process="off") == 1.0  # the info is set, never served twice
    assert ("process_cpu_seconds_total", frozenset()) in samples


async def test_gateway_counts_readings_by_kind_dead_letters_by_reason_and_its_latency(settings, metrics_url):
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    before = await ascrape(metrics_url)
    now = time.time()
    items = [(WL_TOPIC, json.dumps({"ts": format_ts(now - 10 + i), "values": {"level_m": 3.0}}).encode())
             for i in range(3)]
    items += [(WL_TOPIC, b'{"ts": '),
              (mqtt_topic("huangpu", "water_level", "wl-ghost"),
               json.dumps({"ts": format_ts(now), "values": {"level_m": 1.0}}).encode())]

    def send() -> None:
        with MqttPublisher(settings.mqtt) as pub:
            for topic, payload in items:
                pub.publish(topic, payload)
            pub.flush()

    try:
        await asyncio.to_thread(send)
        deadline = time.monotonic() + 30
        while gateway.stats()["messages"] < len(items):
            assert time.monotonic() < deadline, gateway.stats()
            await asyncio.sleep(0.05)
    finally:
        await gateway.stop()
    after = await ascrape(metrics_url)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("cityeye_ingest_readings_accepted_total", kind="water_level") == 3
    assert delta("cityeye_ingest_readings_deadlettered_total", reason="invalid_json") == 1
    assert delta("cityeye_ingest_readings_deadlettered_total", reason="unknown_sensor") == 1
    assert delta("cityeye_ingest_messages_total") == 5
    assert delta("cityeye_ingest_latency_seconds_count") == 5
    assert 0 <= delta("cityeye_ingest_latency_seconds_sum") < 5 * 30
    assert sample(after, "cityeye_ingest_unacked_messages") == 0


async def test_consume_reports_lag_and_position_per_partition(kafka, metrics_url, monkeypatch):
    monkeypatch.setattr("cityeye.consume.LAG_INTERVAL_S", 0.0)  # after every batch, not once a second
    producer = make_producer(kafka.settings, "lag-test")
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait(TOPIC_ALERTS, b"{}", key=b"k", partition=0)
    finally:
        await producer.stop()
    group = f"{kafka.settings.consumer_group_prefix}-lag-test"
    labels = {"group": group, "topic": TOPIC_ALERTS, "partition": "0"}
    seen: list[int] = []

    async def run(stop_after: int) -> None:
        consumer = make_consumer(kafka.settings, TOPIC_ALERTS, group="lag-test")
        await consumer.start()
        stop = asyncio.Event()

        def handle(batches):
            seen.extend(r.offset for r in batches.get(TopicPartition(TOPIC_ALERTS, 0), []))
            if len(seen) >= stop_after:
                stop.set()
            return {tp: records[-1].offset + 1 for tp, records in batches.items() if records}

        try:
            await asyncio.wait_for(consume(consumer, handle, stop, max_records=10), 30)
        finally:
            await consumer.stop()

    await run(stop_after=10)  # one batch of 10: the lag is reported after it
    samples = await ascrape(metrics_url)
    assert sample(samples, "cityeye_consumergroup_lag", **labels) == 20
    assert sample(samples, "cityeye_consumergroup_current_offset", **labels) == 10
    await run(stop_after=30)  # the rest, from the committed offset
    samples = await ascrape(metrics_url)
    assert sample(samples, "cityeye_consumergroup_current_offset", **labels) == 30
    assert sample(samples, "cityeye_consumergroup_lag", **labels) == 0
    assert seen == list(range(30))


async def test_notification_attempts_failures_and_latencies_per_receiver(tmp_path, metrics_url):
    async with Receiver(script=[503]) as receiver:
        receiver_cfg = {"name": "desk-metrics", "type": "webhook", "url": receiver.url("desk")}
        cfg = config([receiver_cfg], delivery={"max_attempts": 3})
        engine = Engine(cfg, Store(tmp_path / "s.sqlite"))
        with engine.store.transaction():
            engine.apply_event(event("wl-01", severity="red"), 0.0)
            engine.tick(0.0)
        notifier = build_notifier(receiver_cfg)
        manager = DeliveryManager(engine, {"desk-metrics": notifier}, cfg.delivery, clock=time.time)
        before = await ascrape(metrics_url)
        try:
            [row] = engine.store.outbox_due("desk-metrics", float("inf"))
            assert await manager.deliver_one(row, notifier) == "retrying"
            [row] = engine.store.outbox_due("desk-metrics", float("inf"))
            assert await manager.deliver_one(row, notifier) == "delivered"
        finally:
            await notifier.close()
        after = await ascrape(metrics_url)
    labels = {"receiver": "desk-metrics", "integration": "webhook"}

    def delta(name: str, **more: str) -> float:
        return sample(after, name, **labels, **more) - sample(before, name, **labels, **more)

    assert delta("cityeye_notifications_total") == 2
    assert delta("cityeye_notifications_failed_total", reason="retryable") == 1
    assert delta("cityeye_notification_latency_seconds_count") == 2
    assert delta("cityeye_notification_delivery_latency_seconds_count") == 1
    assert delta("cityeye_notifications_deadlettered_total") == 0


def test_batch_histogram_exposes_what_prometheus_clients_histogram_does():
    values = [0.0, 0.005, 0.0051, 0.05, 0.3, 1.0, 2.5, 299.0, 300.0, 301.0, 7200.0, 0.01, 0.01]
    registry = CollectorRegistry()
    batched = BatchHistogram("cityeye_test_batch_seconds", "test", registry=registry)
    batched.observe_many(values[:5])
    batched.observe_since(1000.0, [1000.0 - v for v in values[5:]] + [1001.0])  # a time ahead counts as 0
    reference = CollectorRegistry()
    plain = Histogram("cityeye_test_batch_seconds", "test", buckets=LATENCY_BUCKETS, registry=reference)
    for v in [*values, 0.0]:
        plain.observe(v)

    def samples(text: str) -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): round(s.value, 9)
                for f in text_string_to_metric_families(text) if f.name == "cityeye_test_batch_seconds"
                for s in f.samples if not s.name.endswith("_created")}

    got, want = samples(generate_latest(registry).decode()), samples(generate_latest(reference).decode())
    assert got == want and len(want) == len(LATENCY_BUCKETS) + 3


def test_a_taken_metrics_port_stops_the_command_with_exit_code_1(tmp_path, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = tmp_path / "cityeye.yaml"
        config.write_text(f"metrics:\n  port: {taken.getsockname()[1]}\n")
        parser = argparse.ArgumentParser()
        gateway_command.add_arguments(parser)
        assert gateway_command.run(parser.parse_args(["--config", str(config), "--no-create-topics"])) == 1
    assert "gateway could not start" in caplog.text and "Address already in use" in caplog.text
