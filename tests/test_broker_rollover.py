"""The embedded stack moves to a fresh Kafka broker mid-stream (launch/broker_rollover.py, issue #10).

Real servers and processes as ``cityeye run`` starts them (Tansu, Mosquitto,
InfluxDB, gateway, worker, sinks, dispatcher). Two demo gauges publish by MQTT as
their devices:

* ``wl-minhang-01`` alternates above its historical maximum and below its
  near-warning level, a reading every 0.1 s from before the rollover until
  after it, so each reading fires or resolves its warning alert: every
  reading must give exactly one event (none lost, none twice);
* ``wl-huangpu-01`` reaches its warning level (yellow) before the rollover,
  is acknowledged by an officer, and reaches its guaranteed level (orange)
  after it, then falls back: the same alert escalates and resolves, the
  dispatcher keeps its acknowledgement and a silence created before.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from cityeye.contracts import AlertEvent, format_ts
from cityeye.device_credentials import read_credentials
from cityeye.kafka import ensure_topics, make_producer
from launch.broker_rollover import BrokerRollover, BrokerRolloverSettings
from launch.embedded import EmbeddedStack, follow_alerts
from launch.proc_usage import rss_mib
from launch.servers import free_port
from simulators.publisher import MqttPublisher

FLIPPER, EPISODE = "wl-minhang-01", "wl-huangpu-01"
RULE = "water_level.warning"
BALLAST = "test.ballast"


@pytest.fixture
def stack(tmp_path: Path, mqtt_broker, monkeypatch):
    monkeypatch.setattr("launch.embedded.mqtt_server", mqtt_broker)
    rules = tmp_path / "rules.yaml"  # each reading may change the alert (the default waits 2 min of event time)
    rules.write_text(yaml.safe_dump({"sensors": {s: {"warning": {"min_duration_s": 0}} for s in (FLIPPER, EPISODE)}}))
    stack = EmbeddedStack(tmp_path / "stack", with_influx=True, api_port=free_port(),  # the sinks need a sink
                          extra_config={"rules": str(rules), "ingest": {"health_interval_s": 1.0}})
    yield stack
    stack.stop()


class Events:
    """Every alert event, read in a thread of its own that follows the stack's broker."""

    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack, self.events, self._stop, self._loop = stack, [], None, None
        self.received: list[float] = []  # when each event was read (time.time())
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        def take(batches) -> None:
            now = time.time()
            for records in batches.values():
                self.received.extend(now for _ in records)
                self.events.extend(AlertEvent.from_json(r.value) for r in records)
        await follow_alerts(self.stack, take, self._stop)

    def __enter__(self) -> "Events":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        while self._stop is None:
            time.sleep(0.01)
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def of(self, sensor: str) -> list[AlertEvent]:
        return [e for e in list(self.events) if e.sensor_id == sensor and e.rule == RULE]

    def wait(self, what: str, cond, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert not self.stack.dead_parts(), f"parts died: {self.stack.dead_parts()}; logs in {self.stack.workdir}"
            found = cond()
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen within {timeout:.0f} s; logs in {self.stack.workdir}")


class Gauge:
    """Publishes a water level as one device, with its own MQTT account."""

    def __init__(self, stack: EmbeddedStack, sensor: str, district: str) -> None:
        creds = read_credentials(stack.credentials_path)
        self.topic = f"cityeye/{district}/water_level/{sensor}"
        self.pub = MqttPublisher(stack.settings.mqtt, client_id=f"test-{sensor}", username=sensor,
                                 password=creds.password(sensor)).connect()
        self.last = 0.0

    def send(self, level: float) -> float:
        ts = max(round(time.time(), 3), self.last + 0.001)
        self.last = ts
        self.pub.publish(self.topic, json.dumps({"ts": format_ts(ts), "values": {"level_m": level}}).encode())
        return ts


def api(stack: EmbeddedStack, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{stack.api_port}/api/v1/{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {stack.api_token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


async def _ballast(stack: EmbeddedStack, megabytes: int) -> None:
    """Records no part reads, so the old broker holds more than the new one will."""
    await ensure_topics(stack.settings.kafka, {BALLAST: 1})
    producer = make_producer(stack.settings.kafka, "ballast", linger_ms=20)
    await producer.start()
    try:
        blob = b"x" * 65536
        await asyncio.gather(*[await producer.send(BALLAST, blob) for _ in range(megabytes * 16)])
    finally:
        await producer.stop()


def test_rollover_mid_stream_loses_nothing_and_keeps_alert_episodes(stack):
    stack.start_servers()
    stack.start_services()
    gateway_log, deadline = stack.workdir / "gateway.log", time.monotonic() + 60
    while "gateway started" not in gateway_log.read_text(errors="replace"):  # subscribed: MQTT queues for it
        assert time.monotonic() < deadline and not stack.dead_parts(), f"no gateway; logs in {stack.workdir}"
        time.sleep(0.2)
    flipper = Gauge(stack, FLIPPER, "minhang")
    episode = Gauge(stack, EPISODE, "huangpu")
    sent: list[float] = []
    stop_flipping = threading.Event()

    def flip() -> None:
        high = True
        while not stop_flipping.wait(0.1):
            sent.append(flipper.send(5.0 if high else 3.0))
            high = not high

    with Events(stack) as events:
        first = episode.send(4.6)  # yellow: at or above the warning level 4.50 m
        yellow = events.wait("yellow", lambda: [e for e in events.of(EPISODE) if e.updated_at == first],
                             timeout=90)[0]
        assert (yellow.state, yellow.severity) == ("firing", "yellow")
        alert_id = yellow.alert_id
        events.wait("the dispatcher's alert", lambda: _alert_or_none(stack, alert_id))
        acked = api(stack, f"alerts/{alert_id}/ack", {"by": "duty-officer", "comment": "watching it"})
        silence = api(stack, "silences", {"matchers": ["district=jingan"],
                                          "duration": 3600, "created_by": "duty-officer", "comment": "works"})
        flipper_thread = threading.Thread(target=flip, daemon=True)
        flipper_thread.start()
        events.wait("flipper events", lambda: len(events.of(FLIPPER)) >= 10)
        asyncio.run(_ballast(stack, 64))
        old = stack.broker
        old_rss = rss_mib(old.proc.pid)

        report = asyncio.run(BrokerRollover(BrokerRolloverSettings(every_minutes=1)).roll(stack, "test"))

        print(report.summary())
        assert stack.broker is not old and old.proc.poll() is not None, "the old broker still runs"
        assert report.lagging == {}, report.summary()
        assert "--standby" in stack.procs["worker"].args, "the warm standby became the worker"
        assert "standby: starting" in (stack.workdir / "worker.log").read_text(errors="replace")
        changelog = "cityeye-streams-sensor-snapshots-changelog"
        assert report.copied[changelog] >= 2 and report.copied["devices.health"] >= 6, report.copied
        events.wait("flipper events after the rollover", lambda: [e for e in events.of(FLIPPER)
                                                                  if e.updated_at > report.started + 5])
        stop_flipping.set()
        flipper_thread.join()

        second = episode.send(5.3)  # orange: at or above the guaranteed level 5.20 m
        orange = events.wait("orange", lambda: [e for e in events.of(EPISODE) if e.updated_at == second])[0]
        third = episode.send(3.0)
        resolved = events.wait("resolved", lambda: [e for e in events.of(EPISODE) if e.updated_at == third])[0]
        # every flipper reading gave exactly one event: none lost in the pause, none read twice
        try:
            seen = events.wait("every flipper reading", lambda: (lambda ts: ts if set(ts) >= set(sent) else None)(
                [e.updated_at for e in events.of(FLIPPER)]))
        except AssertionError as exc:
            got = {e.updated_at for e in events.of(FLIPPER)}
            missing = [(round(ts - report.started, 3), i) for i, ts in enumerate(sent) if ts not in got]
            order = asyncio.run(_reading_order(stack, FLIPPER, report.started))
            raise AssertionError(f"{exc}; {len(missing)} of {len(sent)} readings without an event "
                                 f"(s after the rollover's start, index): {missing}; {report.summary()}; "
                                 f"(offset, s after the start) on the new broker: {order}") from None
        new_rss = rss_mib(stack.broker.proc.pid)
        print(pause_figures(stack, events, report))

    assert sorted(seen) == sorted(sent), f"{len(sent)} readings, {len(seen)} events"
    states = [e.state for e in sorted(events.of(FLIPPER), key=lambda e: e.updated_at)]
    assert all(a != b for a, b in zip(states, states[1:])), "fire and resolve must alternate"
    # the episode raised before the rollover escalated and resolved after it, never raised again
    assert (orange.alert_id, orange.state, orange.severity) == (alert_id, "firing", "orange")
    assert (resolved.alert_id, resolved.state) == (alert_id, "resolved")
    assert [e.alert_id for e in events.of(EPISODE)] == [alert_id] * 3
    # the dispatcher kept its state: the alert, its acknowledgement (cleared by the escalation, as an escalation
    # does), the silence; the alert goes on to its pending resolve (keep-firing-for) without a second raise
    alert = events.wait("the resolve at the dispatcher", lambda: (lambda a: a if a and any(
        t["action"] == "resolve_pending" for t in a["timeline"]) else None)(_alert_or_none(stack, alert_id)))
    assert acked["acknowledged_by"] == "duty-officer"
    actions = [t["action"] for t in alert["timeline"]]
    assert actions.count("raised") == 1 and "acknowledged" in actions, actions
    assert any(t["action"] == "escalated" and "acknowledgement by duty-officer cleared" in (t.get("detail") or "")
               for t in alert["timeline"]), alert["timeline"]
    assert alert["severity"] == "orange"
    assert silence["id"] in {s["id"] for s in api(stack, "silences")["silences"]}
    assert new_rss < old_rss - 32, (old_rss, new_rss)


async def _reading_order(stack: EmbeddedStack, sensor: str, since: float) -> list[tuple[int, float]]:
    """``(offset, reading time - since)`` of ``sensor``'s readings on the stack's broker, in offset order."""
    from cityeye.kafka import read_topic
    from cityeye.reading_records import readings_of
    out = []
    for records in (await read_topic(stack.settings.kafka, "readings.water_level")).values():
        for r in records:
            out += [(r.offset, round(x.ts - since, 2)) for x in readings_of(r.value, r.key, r.headers)
                    if getattr(x, "sensor_id", None) == sensor]
    return out


def pause_figures(stack: EmbeddedStack, events: Events, report) -> str:
    """The rollover's pauses as the flipper saw them (printed, not asserted: timing depends on the machine)."""
    stopped = report.started + report.steps["gateway stop"]
    from cityeye.kafka import read_topic
    firsts = [r.timestamp / 1000 for records in asyncio.run(read_topic(stack.settings.kafka, "readings.water_level"))
              .values() for r in records[:1]]
    latency = [t - e.updated_at for e, t in zip(list(events.events), list(events.received))
               if e.sensor_id == FLIPPER and e.rule == RULE]
    return (f"rollover figures: intake paused {min(firsts) - stopped:.2f} s (gateway stop -> first reading on the "
            f"new broker); worst flipper publish->event latency {max(latency):.2f} s")


def _alert_or_none(stack: EmbeddedStack, alert_id: str) -> dict | None:
    try:
        return api(stack, f"alerts/{alert_id}")
    except OSError:
        return None


def test_a_rollover_is_due_when_the_broker_passes_its_rss_or_its_period():
    by_rss = BrokerRollover(BrokerRolloverSettings(max_rss_mib=100))
    assert by_rss.due(99.0) is None
    assert by_rss.due(101.0) == "broker RSS 101 MiB > 100 MiB"
    by_time = BrokerRollover(BrokerRolloverSettings(every_minutes=2))
    assert by_time.due(5000.0) is None
    by_time.last -= 121
    assert by_time.due(0.0) == "every 2 min"
    assert not BrokerRolloverSettings().enabled and BrokerRolloverSettings(every_minutes=1).enabled
