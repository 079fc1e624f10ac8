"""The ingest gateway end to end on a real Mosquitto and a real Tansu broker."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from cityeye.config import IngestSettings, RateLimitSettings
from cityeye.contracts import (TOPIC_DEADLETTER, DeadLetter, Reading, all_topics, format_ts, mqtt_topic,
                               parse_ts, readings_topic)
from cityeye.reading_records import AGGREGATE_VERSION, is_aggregate, partition_for, readings_in
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from ingest.readback import read_until as consume
from simulators.publisher import MqttPublisher
from tests.gateway_helpers import gateway_config

REPO = Path(__file__).resolve().parent.parent
WL_TOPIC = mqtt_topic("huangpu", "water_level", "wl-huangpu-01")
WX_TOPIC = mqtt_topic("pudong", "weather", "wx-pudong-01")
TR_TOPIC = mqtt_topic("jingan", "traffic", "tr-jingan-01")


def ms(ts: float) -> float:
    """``ts`` as it comes back from Kafka (RFC 3339 keeps milliseconds)."""
    return parse_ts(format_ts(ts))


def reading(ts: float, **values) -> bytes:
    return json.dumps({"ts": format_ts(ts), "values": values}).encode()


async def publish(settings, items, retain: bool = False) -> None:
    def send():
        with MqttPublisher(settings.mqtt) as pub:
            for topic, payload in items:
                pub.publish(topic, payload, retain=retain)
            pub.flush()
    await asyncio.to_thread(send)


async def wait_for(predicate, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_bad_payloads_are_dead_lettered_with_reasons_while_good_readings_flow(settings):
    registry = load_registry(settings.registry)
    gateway = Gateway(settings, registry)
    await gateway.start()
    now = time.time()
    good = [(WL_TOPIC, reading(now - 100 + i, level_m=3.0 + i / 100)) for i in range(5)]
    bad = {
        "invalid_json": (WL_TOPIC, b'{"ts": '),
        "too_large": (WL_TOPIC, b"{" + b" " * 70000 + b"}"),
        "not_utf8": (WL_TOPIC, b'{"ts": "\xff\xfe"}'),
        "unknown_sensor": (mqtt_topic("huangpu", "water_level", "wl-ghost"), reading(now, level_m=1)),
        "registry_mismatch": (mqtt_topic("minhang", "water_level", "wl-huangpu-01"), reading(now, level_m=1)),
        "not_a_number": (WL_TOPIC, b'{"ts": "%s", "values": {"level_m": "NaN"}}' % format_ts(now).encode()),
        "bad_values": (WL_TOPIC, json.dumps({"ts": format_ts(now), "values": []}).encode()),
        "out_of_range": (WX_TOPIC, reading(now, rain_mm=-3)),
        "ts_in_future": (WL_TOPIC, reading(now + 3600, level_m=1)),
        "ts_too_old": (WL_TOPIC, reading(now - 40 * 86400, level_m=1)),
        "bad_topic": ("cityeye/huangpu/sewage/wl-huangpu-01", reading(now, level_m=1)),
        "invalid_json:infinity": (WL_TOPIC, b'{"ts": 1, "values": {"level_m": Infinity}}'),
    }
    batch = json.dumps([{"ts": format_ts(now - 5), "values": {"rain_mm": 1.5, "temp_c": 25.0}},
                        {"ts": format_ts(now - 4), "values": {"rain_mm": True}},
                        {"ts": format_ts(now - 3), "values": {"rain_mm": 0.0, "pressure_hpa": 1002.5}}]).encode()
    items = [good[0], *bad.values(), good[1], good[2], (WX_TOPIC, batch), good[3], good[4]]
    await publish(settings, items)

    wl, wx = readings_topic("water_level"), readings_topic("weather")
    got = await consume(settings.kafka, [wl, wx, TOPIC_DEADLETTER],
                        lambda o: len(readings_in(o[wl])) >= 5 and len(readings_in(o[wx])) >= 1
                        and len(o[TOPIC_DEADLETTER]) >= 14)
    readings = readings_in(got[wl])
    assert [(r.sensor_id, r.ts, r.values) for r in readings] == [
        ("wl-huangpu-01", ms(now - 100 + i), {"level_m": 3.0 + i / 100}) for i in range(5)]
    # aggregated records (cityeye/reading_records.py) in the partition of the sensor key
    assert {m.partition for m in got[wl]} == {partition_for("wl-huangpu-01", all_topics()[wl])}
    assert all(is_aggregate(m.headers) == AGGREGATE_VERSION for m in got[wl])
    assert {r.district for r in readings} == {"huangpu"} and readings[0].mqtt_topic == WL_TOPIC
    weather = sorted(readings_in(got[wx]), key=lambda r: r.ts)
    assert [r.values for r in weather] == [{"rain_mm": 1.5, "temp_c": 25.0}]  # pressure_hpa: not a weather field

    letters = [DeadLetter.from_json(m.value) for m in got[TOPIC_DEADLETTER]]
    assert len(letters) == 14
    by_topic_payload = {(d.mqtt_topic, base64.b64decode(d.payload_b64)[:1024]): d for d in letters}
    for name, (topic, payload) in bad.items():
        letter = by_topic_payload[(topic, payload[:1024])]
        assert letter.reason.startswith(name.split(":")[0] + ": "), (name, letter.reason)
    assert any(d.reason.startswith("unknown_field: batch item 2: pressure_hpa is not a field of weather")
               for d in letters)
    batch_letter = next(d for d in letters if "batch item 1" in d.reason)
    assert batch_letter.reason == "not_a_number: batch item 1: rain_mm is a JSON boolean, not a number"
    assert json.loads(batch_letter.payload) == {"ts": format_ts(now - 4), "values": {"rain_mm": True}}
    assert batch_letter.sensor_id == "wx-pudong-01"

    await wait_for(lambda: gateway.stats()["messages"] == len(items))
    stats = gateway.stats()
    assert stats["accepted"] == 6 and stats["accepted_by_kind"] == {"water_level": 5, "weather": 1}
    assert stats["dead_lettered"] == {"invalid_json": 2, "too_large": 1, "not_utf8": 1, "unknown_sensor": 1,
                                      "registry_mismatch": 1, "not_a_number": 2, "bad_values": 1,
                                      "out_of_range": 1, "ts_in_future": 1, "ts_too_old": 1, "bad_topic": 1,
                                      "unknown_field": 1}
    await gateway.stop()


async def test_restart_mid_stream_loses_nothing(settings):
    """2000 QoS 1 readings published across a gateway stop/start all reach Kafka."""
    registry = load_registry(settings.registry)
    t0 = time.time() - 2000 * 60
    payloads = [(WL_TOPIC, reading(t0 + 60 * i, level_m=round(2 + i / 1000, 3))) for i in range(2000)]
    wl = readings_topic("water_level")

    first = Gateway(settings, registry)
    await first.start()
    await publish(settings, payloads[:800])
    await wait_for(lambda: first.stats()["messages"] > 0)
    await first.stop()  # likely with messages still queued or in flight: they must come back
    acked_by_first = first.stats()["messages"]
    await publish(settings, payloads[800:1500])  # the broker queues these for the offline session
    second = Gateway(settings, registry)
    await second.start()
    await publish(settings, payloads[1500:])

    expected = {("wl-huangpu-01", ms(t0 + 60 * i)) for i in range(2000)}

    def complete(out):
        return {(r.sensor_id, r.ts) for r in readings_in(out[wl])} >= expected

    got = await consume(settings.kafka, [wl], complete)
    await second.stop()
    seen = Counter((r.sensor_id, r.ts) for r in readings_in(got[wl]))
    assert set(seen) == expected
    duplicates = sum(seen.values()) - len(seen)
    print(f"restart: first gateway acked {acked_by_first} of 800, duplicates in Kafka: {duplicates}")
    assert 0 < acked_by_first <= 800
    assert first.stats()["messages"] + second.stats()["messages"] >= 2000


async def test_a_replay_gateway_takes_years_old_naive_local_times(settings):
    """ingest.max_age_s 0 and ingest.timezone: an old export's local times become readings, in UTC."""
    replay = settings.model_copy(update={"ingest": IngestSettings(max_age_s=0, timezone="Asia/Shanghai")})
    gateway = Gateway(replay, load_registry(settings.registry))
    await gateway.start()
    rows = [("2019-07-01T08:00:00", 3.1), ("2019-07-01T08:15:00+08:00", 3.2), ("2019-07-01T08:30:00", 3.3)]
    await publish(settings, [(WL_TOPIC, json.dumps({"ts": ts, "values": {"level_m": v}}).encode()) for ts, v in rows])
    wl = readings_topic("water_level")
    got = await consume(settings.kafka, [wl], lambda o: len(readings_in(o[wl])) >= 3)
    assert [(r.ts, r.values["level_m"]) for r in readings_in(got[wl])] == [
        (parse_ts("2019-07-01T00:00:00Z"), 3.1), (parse_ts("2019-07-01T00:15:00Z"), 3.2),
        (parse_ts("2019-07-01T00:30:00Z"), 3.3)]
    await wait_for(lambda: gateway.stats()["messages"] == 3)
    assert gateway.stats()["dead_lettered"] == {}
    await gateway.stop()


async def test_a_flood_of_garbage_or_of_good_readings_from_one_sensor_does_not_starve_another(settings):
    """3,000 garbage messages from one gauge and 1,000 good but too fast readings from a traffic
    detector (ingest.rate_limit: 20/s, burst 250): the weather station's 200 readings all arrive."""
    limited = settings.model_copy(update={"ingest": IngestSettings(rate_limit=RateLimitSettings(messages_per_s=20,
                                                                                                burst=250))})
    registry = load_registry(settings.registry)
    gateway = Gateway(limited, registry)
    await gateway.start()
    now = time.time()
    flood = [(WL_TOPIC, b"\x00garbage" * (i % 50 + 1)) for i in range(3000)]
    fast = [(TR_TOPIC, reading(now - 2000 + i, speed_kmh=50.0)) for i in range(1000)]
    good = [(WX_TOPIC, reading(now - 300 + i, rain_mm=0.5)) for i in range(200)]
    mixed = [item for trio in zip(flood[:200], fast[:200], good) for item in trio] + [
        item for pair in zip(flood[200:1000], fast[200:]) for item in pair] + flood[1000:]
    await publish(settings, mixed)
    wx, tr = readings_topic("weather"), readings_topic("traffic")
    got = await consume(settings.kafka, [wx, tr, TOPIC_DEADLETTER],
                        lambda o: len(readings_in(o[wx])) >= 200
                        and len(readings_in(o[tr])) + len(o[TOPIC_DEADLETTER]) >= 4000)
    await wait_for(lambda: gateway.stats()["messages"] == 4200)
    assert sorted(r.ts for r in readings_in(got[wx])) == [ms(now - 300 + i) for i in range(200)]
    letters = [DeadLetter.from_json(m.value) for m in got[TOPIC_DEADLETTER]]
    by_sensor = {sid: Counter(d.reason.split(":")[0] for d in letters if d.sensor_id == sid)
                 for sid in ("wl-huangpu-01", "tr-jingan-01", "wx-pudong-01")}
    assert sum(by_sensor["wl-huangpu-01"].values()) == 3000
    assert set(by_sensor["wl-huangpu-01"]) == {"invalid_json", "rate_limited"}
    assert by_sensor["wl-huangpu-01"]["invalid_json"] >= 250
    assert set(by_sensor["tr-jingan-01"]) == {"rate_limited"} and not by_sensor["wx-pudong-01"]
    traffic = readings_in(got[tr])
    assert len(traffic) >= 250 and len(traffic) + by_sensor["tr-jingan-01"]["rate_limited"] == 1000
    lag = [(m.timestamp / 1000 - r.received_at) for m in got[wx] for r in readings_in([m])]
    print(f"flood: weather readings in Kafka {max(lag) * 1000:.0f} ms at most after the gateway received them; "
          f"traffic {len(traffic)} of 1000 passed the rate limit; {by_sensor}")
    assert gateway.stats()["dead_lettered"]["rate_limited"] == (by_sensor["wl-huangpu-01"]["rate_limited"]
                                                                + by_sensor["tr-jingan-01"]["rate_limited"])
    await gateway.stop()


async def test_kafka_outage_applies_backpressure_and_loses_nothing(settings, kafka):
    """A hung broker (SIGSTOP) stalls the gateway: nothing is acked until Kafka has it."""
    registry = load_registry(settings.registry)
    gateway = Gateway(settings, registry)
    await gateway.start()
    now = time.time()
    await publish(settings, [(WL_TOPIC, reading(now - 1000, level_m=1.0))])
    await wait_for(lambda: gateway.stats()["messages"] == 1)

    kafka.proc.send_signal(signal.SIGSTOP)
    try:
        await publish(settings, [(WL_TOPIC, reading(now - 900 + i, level_m=1.5)) for i in range(300)])
        # wait until the gateway has taken in 100 of them from the broker (it may have all 300 in flight:
        # Mosquitto's max_inflight_messages is 1000 in launch/mqtt_servers.py), held or (wrongly) acknowledged
        await wait_for(lambda: gateway.stats()["unacked"] + gateway.stats()["messages"] >= 1 + 100)
        assert gateway.stats()["messages"] == 1  # nothing acknowledged while Kafka is down
        # the gateway holds what the broker let in flight (all 300 here); the rest would wait at the broker
        assert gateway.stats()["accepted"] == 1 and 0 < gateway.stats()["unacked"] <= 300
    finally:
        kafka.proc.send_signal(signal.SIGCONT)
    wl = readings_topic("water_level")
    expected = {ms(now - 1000)} | {ms(now - 900 + i) for i in range(300)}
    got = await consume(kafka.settings, [wl], lambda o: {r.ts for r in readings_in(o[wl])} >= expected)
    assert {r.ts for r in readings_in(got[wl])} == expected
    await wait_for(lambda: gateway.stats()["messages"] == 301)
    await gateway.stop()


def test_the_fast_record_encoding_matches_the_contract_encoding():
    from cityeye.contracts import to_json
    from ingest.kafka_delivery import encode as _encode

    r = Reading("wl-1", "water_level", "huangpu", 1.5, {"level_m": 1.0, "x": -2.5e-7}, 2.25, WL_TOPIC)
    d = DeadLetter.of("数据".encode() + b"\xff", WL_TOPIC,
                      "not_utf8: x", 3.0, "wl-1")
    # the same JSON values (orjson writes the shortest round-trip float form: -2.5e-7, not -2.5e-07)
    assert json.loads(_encode(r)) == json.loads(to_json(r)) and _encode(d) == to_json(d)
    assert Reading.from_json(_encode(r)) == r and DeadLetter.from_json(_encode(d)) == d


async def test_gateway_command_runs_until_sigterm_and_logs_counters(settings, tmp_path):
    config = gateway_config(tmp_path / "cityeye.yaml", settings.kafka,
                            {"port": settings.mqtt.port, "client_id": "gw-cli"}, settings.registry,
                            ingest={"stats_interval_s": 0.2})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "launch.cli", "gateway", "--config", str(config),
                                                stderr=asyncio.subprocess.PIPE, cwd=REPO)
    try:
        lines: list[str] = []

        async def read_log_until(text):
            while not any(text in line for line in lines):
                line = await asyncio.wait_for(proc.stderr.readline(), 30)
                assert line, "".join(lines)
                lines.append(line.decode())
        await read_log_until("MQTT subscribed")
        now = time.time()
        await publish(settings, [(WL_TOPIC, reading(now - 5, level_m=2.5)), (WL_TOPIC, b"[]")])
        wl = readings_topic("water_level")
        got = await consume(settings.kafka, [wl, TOPIC_DEADLETTER], lambda o: o[wl] and o[TOPIC_DEADLETTER])
        assert readings_in(got[wl])[0].values == {"level_m": 2.5}
        assert DeadLetter.from_json(got[TOPIC_DEADLETTER][0].value).reason == "bad_shape: empty array"
        await read_log_until("'accepted': 1")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await read_log_until("gateway stopped")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_stop_during_a_kafka_outage_leaves_messages_for_the_next_gateway(settings, kafka):
    registry = load_registry(settings.registry)
    first = Gateway(settings, registry)
    await first.start()
    now = time.time()
    kafka.proc.send_signal(signal.SIGSTOP)
    try:
        await publish(settings, [(WL_TOPIC, reading(now - 500 + i, level_m=2.0)) for i in range(50)])
        await wait_for(lambda: first.stats()["unacked"] == 50)
        await first.stop(drain_timeout=1.0)  # returns although Kafka never answered
        assert first.stats()["messages"] == 0
    finally:
        kafka.proc.send_signal(signal.SIGCONT)
    second = Gateway(settings, registry)
    await second.start()
    wl = readings_topic("water_level")
    expected = {ms(now - 500 + i) for i in range(50)}
    got = await consume(settings.kafka, [wl], lambda o: {r.ts for r in readings_in(o[wl])} >= expected)
    await wait_for(lambda: second.stats()["messages"] == 50)
    await second.stop()
    assert {r.ts for r in readings_in(got[wl])} == expected
