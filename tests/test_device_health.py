"""Device health (issue #12): the gateway's per-device counters, on Kafka, in the dispatcher's API.

End to end on real Mosquitto, Tansu and the dispatcher's HTTP server: the
gateway publishes ``devices.health``, the dispatcher keeps the newest record
per device (skipping a malformed record) and serves ``/api/v1/devices``.
The rate limiter, the tracker's rates and the status rules are pure and
tested on their own.
"""

from __future__ import annotations

import time

import aiohttp

from alerts.web.devices import device_status
from alerts.web.openapi import OPENAPI
from cityeye.config import IngestSettings, RateLimitSettings
from cityeye.contracts import DeadLetter, Reading, mqtt_topic
from cityeye.device_health import TOPIC_DEVICES_HEALTH, DeviceHealth
from cityeye.sensor_registry import load_registry, parse_registry
from ingest.device_health import DeviceHealthTracker
from ingest.gateway import Gateway
from ingest.rate_limit import DeviceRateLimiter
from tests.alerting_helpers import config
from tests.kafka_helpers import produce, wait_until
from tests.test_alerts_dispatch import Running, dispatcher_settings
from tests.test_gateway import WL_TOPIC, publish, reading

TR_TOPIC = mqtt_topic("jingan", "traffic", "tr-jingan-01")
#: reading the API needs a token (a read-only one is enough)
READ_TOKEN = "device-health-read-token"


async def test_device_health_reaches_the_api_through_kafka(settings, kafka, tmp_path):
    gw_settings = settings.model_copy(update={"ingest": IngestSettings(
        health_interval_s=0.2, rate_limit=RateLimitSettings(messages_per_s=1, burst=5))})
    gateway = Gateway(gw_settings, load_registry(settings.registry))
    await gateway.start()
    await produce(kafka.settings, TOPIC_DEVICES_HEALTH, [(b"wl-huangpu-01", b"{not json"), (None, b"[1]")])
    now = time.time()
    await publish(settings, [(WL_TOPIC, reading(now - 30 + i, level_m=2.0)) for i in range(3)]
                  + [(WL_TOPIC, reading(now - 10, level_m=999.0))]
                  + [(TR_TOPIC, reading(now - 60 + i, speed_kmh=40.0)) for i in range(30)])
    try:
        async with Running(dispatcher_settings(kafka, tmp_path), config(api={"read_tokens": [READ_TOKEN]})) as d, \
                aiohttp.ClientSession(f"http://127.0.0.1:{d.api_port}",
                                      headers={"Authorization": f"Bearer {READ_TOKEN}"}) as http:
            async def devices(**params) -> dict:
                async with http.get("/api/v1/devices", params=params) as r:
                    assert r.status == 200
                    return {x["sensor_id"]: x for x in (await r.json())["devices"]}

            async def counted() -> bool:
                got = await devices()
                return got.get("wl-huangpu-01", {}).get("messages") == 4 and got["tr-jingan-01"]["messages"] == 30
            assert await wait_until(counted, timeout=30)
            got = await devices()
            wl, tr = got["wl-huangpu-01"], got["tr-jingan-01"]
            assert (wl["readings"], wl["dead_letters"], wl["rate_limited"]) == (3, 1, 0)
            assert wl["last_reason"].startswith("out_of_range: level_m=999") and wl["last_seen"] >= now
            assert tr["rate_limited"] >= 20 and tr["readings"] + tr["rate_limited"] == 30
            assert tr["last_reason"].startswith("rate_limited: more than 1 messages/s (burst 5)")
            assert got["wl-minhang-01"]["status"] == "silent" and got["wl-minhang-01"]["last_seen"] is None
            assert set(got) == {s.id for s in load_registry(settings.registry)}
            assert d.devices.malformed == 2
            assert set(await devices(kind="traffic")) == {"tr-jingan-01", "tr-pudong-01"}
            assert set(await devices(status="silent")) == set(got) - {"wl-huangpu-01", "tr-jingan-01"}
            async with http.get("/api/v1/devices/tr-jingan-01") as r:
                assert r.status == 200 and (await r.json())["gateway"] == settings.mqtt.client_id
            async with http.get("/api/v1/devices/nope") as r:
                assert r.status == 404 and (await r.json())["error"]["status"] == 404
            async with http.get("/api/v1/devices", params={"status": "bogus"}) as r:
                assert r.status == 422 and "status: one of rejecting, rate_limited, silent, ok" in (await r.json())["error"]["message"]
    finally:
        await gateway.stop()
    assert {"/api/v1/devices", "/api/v1/devices/{id}"} <= set(OPENAPI["paths"])


REGISTRY = parse_registry("""
sensors:
  - {id: wl-1, kind: water_level, district: huangpu, lat: 31.2, lon: 121.5}
  - {id: wl-2, kind: water_level, district: huangpu, lat: 31.2, lon: 121.5}
""")


def test_the_rate_limiter_is_a_token_bucket_per_device_and_one_for_unregistered_ids():
    limiter = DeviceRateLimiter(RateLimitSettings(messages_per_s=2, burst=3), {"wl-1", "wl-2"})
    assert [limiter.allow("wl-1", 100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("wl-2", 100.0)  # another device is not affected
    assert not limiter.allow("wl-1", 100.4) and limiter.allow("wl-1", 100.5)  # 2 per second refill
    assert [limiter.allow(f"ghost-{i}", 100.0) for i in range(4)] == [True, True, True, False]  # one shared bucket
    assert len(limiter._buckets) == 3
    off = DeviceRateLimiter(RateLimitSettings(), {"wl-1"})
    assert all(off.allow("wl-1", 100.0) for _ in range(1000))


def test_the_tracker_counts_per_device_and_rates_per_interval():
    tracker = DeviceHealthTracker(REGISTRY, "gw-1", started_at=100.0)
    for i in range(6):
        tracker.message("wl-1", 101.0 + i)
    tracker.message("ghost", 101.0)  # not registered: not tracked
    tracker.outcome(Reading("wl-1", "water_level", "huangpu", 100.0, {"level_m": 1.0}, 101.0, WL_TOPIC))
    tracker.outcome(DeadLetter.of(b"x", WL_TOPIC, "invalid_json: x", 106.0, "wl-1"))
    tracker.rate_limited("wl-1")
    first = {h.sensor_id: h for h in tracker.snapshot(110.0)}
    assert set(first) == {"wl-1", "wl-2"}
    wl = first["wl-1"]
    assert (wl.messages, wl.readings, wl.dead_letters, wl.rate_limited) == (6, 1, 1, 1)
    assert (wl.message_rate_per_s, wl.dead_letter_rate_per_s) == (0.6, 0.1)
    assert (wl.last_seen, wl.last_reading_at, wl.last_reason, wl.last_reason_at) == (106.0, 101.0, "invalid_json: x", 106.0)
    assert first["wl-2"].last_seen is None and first["wl-2"].messages == 0
    second = {h.sensor_id: h for h in tracker.snapshot(120.0)}["wl-1"]
    assert (second.messages, second.message_rate_per_s, second.dead_letter_rate_per_s) == (6, 0.0, 0.0)
    assert DeviceHealth.from_json(second.to_json()) == second


def health(**kw) -> DeviceHealth:
    base = dict(sensor_id="wl-1", kind="water_level", district="huangpu", last_seen=1000.0, last_reading_at=990.0,
                messages=10, readings=9, dead_letters=1, rate_limited=0, message_rate_per_s=0.1,
                dead_letter_rate_per_s=0.0, last_reason=None, last_reason_at=None, updated_at=1000.0, gateway="gw")
    return DeviceHealth(**{**base, **kw})


def test_the_status_a_device_is_shown_with():
    assert device_status(health(), 1000.0, 600) == "ok"
    assert device_status(health(last_seen=None), 1000.0, 600) == "silent"
    assert device_status(health(), 1601.0, 600) == "silent"
    rejecting = health(dead_letter_rate_per_s=0.5, last_reason="bad_ts: x", last_reason_at=999.0)
    assert device_status(rejecting, 1000.0, 600) == "rejecting"
    assert device_status(health(dead_letter_rate_per_s=0.5, last_reason="bad_ts: x", last_reason_at=980.0),
                         1000.0, 600) == "ok"  # readings came after the dead letter
    flooding = health(dead_letter_rate_per_s=9.0, rate_limited=90, last_reason="rate_limited: more", last_reason_at=999.0)
    assert device_status(flooding, 1000.0, 600) == "rate_limited"
