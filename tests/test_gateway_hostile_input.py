"""No payload, topic or flood can stop the gateway (issue #12), on a real Mosquitto and Tansu.

Every message the gateway receives gets readings or dead letters with a
reason, it is acknowledged, and the gateway goes on: a JSON-escaped lone
surrogate (also retained, so a fresh gateway meets it first), a failure
inside the gateway's own handling of one message (``internal_error``),
topics outside ``cityeye/<district>/<kind>/<sensor_id>``, fields the kind
does not declare. The property-based fuzz test is in test_gateway_fuzz.
"""

from __future__ import annotations

import base64
import gc
import json
import time
import tracemalloc
import uuid

import pytest

import ingest.formats
from cityeye.config import IngestSettings, MqttSettings, load_settings
from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, readings_topic
from cityeye.reading_records import readings_in
from cityeye.errors import ConfigError
from cityeye.sensor_registry import load_registry
from ingest.bounded_memo import BoundedMemo
from ingest.bridge import Inbound
from ingest.gateway import Gateway
from ingest.readback import read_until as consume
from ingest.validation import reason_code
from simulators import DEMO_REGISTRY
from tests.test_gateway import WL_TOPIC, ms, publish, reading, wait_for

pytestmark = pytest.mark.timeout(120)

LONE_SURROGATE = b'[{"ts": "\\ud800", "values": {"level_m": 1}}]'
WL = readings_topic("water_level")


def with_client_id(settings, client_id: str):
    return settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"client_id": client_id})})


def letters_of(records) -> list[DeadLetter]:
    return [DeadLetter.from_json(m.value) for m in records[TOPIC_DEADLETTER]]


async def test_a_lone_surrogate_is_a_dead_letter_also_retained_and_readings_flow_on(settings):
    registry = load_registry(settings.registry)
    now = time.time()
    # retained before any gateway runs: every fresh gateway session receives it first
    await publish(settings, [(WL_TOPIC, LONE_SURROGATE)], retain=True)
    first = Gateway(with_client_id(settings, f"gw-{uuid.uuid4().hex[:6]}"), registry)
    await first.start()
    await publish(settings, [(WL_TOPIC, LONE_SURROGATE)]
                  + [(WL_TOPIC, reading(now - 100 + i, level_m=2.0 + i / 100)) for i in range(25)])
    await wait_for(lambda: first.stats()["messages"] == 27)
    await first.stop()
    # a second gateway with a fresh session gets the retained message again, then more readings
    second = Gateway(with_client_id(settings, f"gw-{uuid.uuid4().hex[:6]}"), registry)
    await second.start()
    await publish(settings, [(WL_TOPIC, reading(now - 50 + i, level_m=3.0)) for i in range(25)])
    expected = {ms(now - 100 + i) for i in range(25)} | {ms(now - 50 + i) for i in range(25)}
    got = await consume(settings.kafka, [WL, TOPIC_DEADLETTER],
                        lambda o: {r.ts for r in readings_in(o[WL])} >= expected
                        and len(o[TOPIC_DEADLETTER]) >= 3)
    await wait_for(lambda: second.stats()["messages"] == 26)
    assert all(not t.done() for t in second._tasks)  # alive
    await second.stop()
    assert {r.ts for r in readings_in(got[WL])} == expected
    letters = letters_of(got)
    assert len(letters) == 3
    for letter in letters:
        assert letter.reason.startswith("bad_ts: batch item 0: ")
        assert json.loads(letter.payload) == {"ts": "\ud800", "values": {"level_m": 1}}
        assert letter.sensor_id == "wl-huangpu-01"
    await publish(settings, [(WL_TOPIC, b"")], retain=True)  # clear the retained message


async def test_a_failure_inside_the_gateway_dead_letters_that_message_only(settings, monkeypatch):
    """A bug met by one message (here: validation raising) costs that message, not the gateway."""
    real = ingest.formats.validate_message  # the gateway validates through its device formats

    def buggy(payload, topic, *args, **kwargs):
        if payload.startswith(b'{"boom"'):
            raise RuntimeError("boom \udcff in handling")  # even its message is not UTF-8-encodable
        return real(payload, topic, *args, **kwargs)

    monkeypatch.setattr(ingest.formats, "validate_message", buggy)
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    now = time.time()
    items = [(WL_TOPIC, reading(now - 30, level_m=1.5)), (WL_TOPIC, b'{"boom": 1}'),
             (WL_TOPIC, reading(now - 20, level_m=1.6))]
    await publish(settings, items)
    got = await consume(settings.kafka, [WL, TOPIC_DEADLETTER], lambda o: len(readings_in(o[WL])) >= 2 and o[TOPIC_DEADLETTER])
    await wait_for(lambda: gateway.stats()["messages"] == 3)
    stats = gateway.stats()
    await gateway.stop()
    assert [r.values for r in readings_in(got[WL])] == [{"level_m": 1.5}, {"level_m": 1.6}]
    [letter] = letters_of(got)
    assert letter.reason == "internal_error: RuntimeError: boom \\udcff in handling"
    assert base64.b64decode(letter.payload_b64) == b'{"boom": 1}' and letter.sensor_id == "wl-huangpu-01"
    assert stats["dead_lettered"] == {"internal_error": 1} and stats["accepted"] == 2


ODD_TOPICS = [
    "cityeye/../x",
    "cityeye/huangpu/water_level/wl-huangpu-01/extra",
    "/cityeye/huangpu/water_level/wl-huangpu-01",
    "cityeye/huangpu/WATER_LEVEL/wl-huangpu-01",
    "cityeye//water_level/wl-huangpu-01",
    "cityeye/huangpu/water_level/数据",
    "cityeye",
]


async def test_every_topic_under_the_namespace_gets_a_reading_or_a_dead_letter(settings):
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    now = time.time()
    odd = [(topic, reading(now - 10, level_m=1.0)) for topic in ODD_TOPICS]
    await publish(settings, [*odd, (WL_TOPIC, reading(now - 5, level_m=1.0))])
    got = await consume(settings.kafka, [WL, TOPIC_DEADLETTER],
                        lambda o: o[WL] and len(o[TOPIC_DEADLETTER]) >= len(ODD_TOPICS))
    await wait_for(lambda: gateway.stats()["messages"] == len(ODD_TOPICS) + 1)
    await gateway.stop()
    by_topic = {d.mqtt_topic: d for d in letters_of(got)}
    assert set(by_topic) == set(ODD_TOPICS)
    assert all(d.reason.startswith("bad_topic: ") for d in by_topic.values()), [d.reason for d in by_topic.values()]
    assert gateway.stats()["dead_lettered"] == {"bad_topic": len(ODD_TOPICS)}


async def test_the_notifiers_own_output_under_the_namespace_is_neither_a_reading_nor_a_dead_letter(settings):
    """``cityeye/out/...`` (the MQTT notifier's notifications) is inside ``cityeye/#``: acknowledged, counted."""
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    now = time.time()
    notice = b'{"status": "firing", "severity": "orange", "district": "huangpu"}'
    await publish(settings, [("cityeye/out/huangpu/orange", notice), ("cityeye/out/huangpu/orange/extra", notice),
                             ("cityeye/out", notice), (WL_TOPIC, reading(now - 5, level_m=1.0))])
    got = await consume(settings.kafka, [WL, TOPIC_DEADLETTER], lambda o: o[WL])
    await wait_for(lambda: gateway.stats()["messages"] == 4)
    stats = gateway.stats()
    await gateway.stop()
    # "cityeye/out/#" also matches "cityeye/out" itself, as MQTT filters do
    assert stats["service_output"] == 3 and stats["dead_lettered_total"] == 0 and stats["accepted"] == 1
    assert not letters_of(got)


async def test_fields_the_kind_does_not_declare_are_refused_or_dropped_by_configuration(settings):
    now = time.time()
    traffic_on_a_gauge = reading(now - 10, level_m=1.0, speed_kmh=42.0)
    registry = load_registry(settings.registry)
    gateway = Gateway(settings, registry)  # the default: reject
    await gateway.start()
    await publish(settings, [(WL_TOPIC, traffic_on_a_gauge)])
    got = await consume(settings.kafka, [TOPIC_DEADLETTER], lambda o: o[TOPIC_DEADLETTER])
    await gateway.stop()
    [letter] = letters_of(got)
    assert letter.reason == ("unknown_field: speed_kmh is not a field of water_level (declared: level_m)")

    dropping = settings.model_copy(update={"ingest": IngestSettings(unknown_fields="drop"),
                                           "mqtt": MqttSettings(port=settings.mqtt.port, client_id="gw-drop")})
    gateway = Gateway(dropping, registry)
    await gateway.start()
    await publish(settings, [(WL_TOPIC, traffic_on_a_gauge), (WL_TOPIC, reading(now - 5, speed_kmh=42.0))])
    got = await consume(settings.kafka, [WL, TOPIC_DEADLETTER], lambda o: o[WL] and len(o[TOPIC_DEADLETTER]) >= 2)
    await gateway.stop()
    assert [r.values for r in readings_in(got[WL])] == [{"level_m": 1.0}]
    assert letters_of(got)[1].reason.startswith("unknown_field: no field of water_level left")


def test_the_gateway_subscribes_to_the_whole_namespace_by_default_and_filters_are_checked():
    assert load_settings(None).mqtt.topic_filters == ["cityeye/#", "/cityeye/#"]
    assert load_settings(None, mqtt__topic_filter="site/+/+/+").mqtt.topic_filters == ["site/+/+/+"]  # the old key
    for bad in (["cityeye/#/x"], ["cityeye/a+"], [""], []):
        with pytest.raises(ConfigError, match="mqtt.topic_filters"):
            load_settings(None, mqtt__topic_filters=bad)


def test_the_topic_memo_stays_bounded_whatever_topics_arrive():
    calls = []
    memo = BoundedMemo(lambda topic: calls.append(topic) or topic.count("/"), size=3, max_len=20)
    assert [memo[t] for t in ("a/b", "a/b", "c/d/e")] == [1, 1, 2] and calls == ["a/b", "c/d/e"]  # asked once each
    long_topic = "x/" * 50
    assert memo[long_topic] == memo[long_topic] == 50 and calls.count(long_topic) == 2  # too long to keep
    memo["f"], memo["g"]  # the fourth topic kept: the memo forgot the others first
    assert len(memo) <= 3
    memo["a/b"]
    assert calls.count("a/b") == 2


def _retained_bytes(handle, messages) -> int:
    """Bytes still allocated after ``handle`` saw every message (and the messages are gone)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for message in messages:
            handle(message)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("hostile", ["topic", "service_topic", "field_name"])
def test_endless_long_hostile_topics_and_field_names_keep_no_memory(hostile):
    settings = load_settings(None, registry=str(DEMO_REGISTRY), mqtt__service_topics=["cityeye/alerts/#"])
    gateway = Gateway(settings, load_registry(DEMO_REGISTRY))  # not started: its per-message path only
    now = time.time()
    pad = "x" * 20_000

    def message(i: int) -> Inbound:  # a fresh 20 kB topic or field name per message
        if hostile == "field_name":
            return Inbound(WL_TOPIC, reading(now, **{f"f{i}{pad}": 1.0}), i, 1, 0, now)
        district = "alerts" if hostile == "service_topic" else "d"
        return Inbound(f"cityeye/{district}/water_level/{i}{pad}", b"{}", i, 1, 0, now)

    outcomes = [gateway._outcomes_of(message(0))]  # warm: whatever is made once
    retained = _retained_bytes(lambda m: outcomes.__setitem__(0, gateway._outcomes_of(m)),
                               (message(i) for i in range(1, 301)))  # 6 MB of hostile strings
    assert retained < 200_000, f"{retained} bytes kept after 300 hostile messages"
    expected = {"topic": "bad_topic", "field_name": "bad_values"}.get(hostile)  # service output: acked unread
    assert [reason_code(letter.reason) for letter in outcomes[0]] == ([expected] if expected else [])
