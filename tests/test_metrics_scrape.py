"""A real Prometheus scrapes the running pipeline, the way ``cityeye run`` starts it.

The embedded stack (Tansu, Mosquitto, the gateway, worker, sinks and
dispatcher processes, each serving its metrics on a free port) runs the
simulated flood; Prometheus (Debian's package) scrapes every process each
second with the pipeline's alert rules loaded, and the test asks its HTTP
API what it saw: readings accepted and processed, alert events by rule and
severity, the consumer groups' lag, latency histograms, notifications to a
webhook receiver; then the sinks process is killed and the rules report it
down.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cityeye.kinds import declared
from launch.prometheus_server import PrometheusServer
from launch.servers import free_port
from tests.alerting_helpers import receiver_in_thread
from tests.test_end_to_end import DISPATCH_PATH, SINKS_PATH, StackWithDispatchWebhook

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "cityeye-rules.yml"


@pytest.fixture
def stack(tmp_path: Path, mqtt_broker, monkeypatch):
    monkeypatch.setattr("launch.embedded.mqtt_server", mqtt_broker)
    with receiver_in_thread() as receiver:
        stack = StackWithDispatchWebhook(tmp_path / "stack", with_influx=False, api_port=free_port(),
                                         extra_config={"webhook": {"url": receiver.url(SINKS_PATH)}},
                                         dispatch_url=receiver.url(DISPATCH_PATH))
        yield stack
        stack.stop()


def value(result: list[dict]) -> float:
    """The single sample of an instant query's vector."""
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_prometheus_scrapes_gateway_worker_sinks_and_dispatcher(stack, tmp_path):
    stack.start_servers()
    stack.start_services()
    stack.start_simulators(speed=3000, scenario="flood", seed=7, duration_h=24)
    targets = {f"cityeye-{name}": [f"127.0.0.1:{port}"] for name, port in stack.metrics_ports.items()}
    assert set(targets) == {"cityeye-gateway", "cityeye-worker", "cityeye-sinks", "cityeye-dispatcher"}

    with PrometheusServer(targets, scrape_interval_s=1, rule_files=[RULES], workdir=tmp_path / "prom") as prom:
        rules = prom.api("rules")["groups"]
        assert [g["name"] for g in rules] == ["cityeye-pipeline"]
        assert all(r["health"] != "err" for g in rules for r in g["rules"]), rules

        # every process answered a scrape (each in the last 30 s: one slow answer on a loaded machine is no outage)
        try:
            up = prom.wait_for('count(max_over_time(up{job=~"cityeye-.*"}[30s]) == 1) == 4', timeout=90)
        except TimeoutError as exc:
            exited = {name: proc.returncode for name, proc in stack.procs.items() if proc.poll() is not None}
            raise AssertionError(f"not every process answered scrapes; exited: {exited}; "
                                 f"logs in {stack.workdir}") from exc
        assert value(up) == 4

        # readings in at the gateway, through the worker, alert events by rule and severity
        accepted = prom.wait_for('sum(cityeye_ingest_readings_accepted_total{job="cityeye-gateway"}) > 0', 120)
        assert value(accepted) > 0
        assert prom.wait_for('sum(cityeye_ingest_messages_total) > 0')
        # wait for the water levels themselves: the kinds' records reach the worker in any order
        processed = prom.wait_for('sum by (kind) (cityeye_worker_readings_total{job="cityeye-worker", '
                                  'kind="water_level"}) > 0', 120)
        assert {r["metric"]["kind"] for r in processed} == {"water_level"}
        events = prom.wait_for('cityeye_alert_events_total{rule="water_level.warning", state="firing"} > 0', 180)
        assert {r["metric"]["severity"] for r in events} <= {"blue", "yellow", "orange", "red"}
        assert prom.wait_for('sum(cityeye_snapshot_writes_total) > 0')

        # latency histograms of every stage, in seconds
        for metric in ("cityeye_ingest_latency_seconds", "cityeye_worker_latency_seconds",
                       "cityeye_dispatcher_latency_seconds"):
            p50 = prom.wait_for(f"histogram_quantile(0.5, sum by (le) (rate({metric}_bucket[1m]))) >= 0")
            assert 0 <= value(p50) < 60, (metric, p50)

        # the lag of each consumer group per partition, named after kafka_exporter's
        prefix = stack.settings.kafka.consumer_group_prefix
        for group, job in [("streams", "worker"), ("dispatcher", "dispatcher"), ("dispatcher-router", "dispatcher"),
                           ("sink-webhook", "sinks")]:
            lag = prom.wait_for(f'cityeye_consumergroup_lag{{group="{prefix}-{group}", job="cityeye-{job}"}}', 60)
            assert all(r["metric"]["partition"].isdigit() and float(r["value"][1]) >= 0 for r in lag), lag
        # partitions of the worker's readings topics, each once
        owned = prom.query(f'count(cityeye_consumergroup_lag{{group="{prefix}-streams"}})')
        assert 0 < value(owned) <= sum(spec.partitions for spec in declared().values())
        assert prom.wait_for(f'cityeye_consumergroup_current_offset{{group="{prefix}-streams"}} > 0', 60)

        # the dispatcher notified the webhook receiver; the forwarder wrote to it
        notified = prom.wait_for('cityeye_notifications_total{receiver="dispatch-webhook", '
                                 'integration="webhook"} > 0', 180)
        assert value(notified) >= 1
        assert prom.query('sum(cityeye_notifications_failed_total{receiver="dispatch-webhook"}) > 0') == []
        assert prom.wait_for('cityeye_notification_delivery_latency_seconds_count{receiver="dispatch-webhook"} > 0')
        assert prom.wait_for('cityeye_sink_written_total{sink="webhook", job="cityeye-sinks"} > 0', 120)
        assert prom.wait_for('cityeye_dispatcher_events_total{job="cityeye-dispatcher"} > 0')
        healthy = 'ALERTS{alertname=~"CityEyeProcessDown|CityEyeReceiverFailing|CityEyeNotificationsDeadLettered"}'
        assert prom.query(healthy) == [], "every process up and every notification delivered"

        # a process that dies is seen down, and the pipeline rule picks it up (pending for its 1 minute)
        os.killpg(stack.procs["sinks"].pid, signal.SIGKILL)
        prom.wait_for('up{job="cityeye-sinks"} == 0', 30)
        pending = prom.wait_for('ALERTS{alertname="CityEyeProcessDown"}', 30)
        assert [r["metric"]["job"] for r in pending] == ["cityeye-sinks"]
        assert pending[0]["metric"]["alertstate"] == "pending"
