"""Property-based fuzzing of the gateway on a real Mosquitto and Tansu (issue #12).

Hypothesis (fixed seed: ``derandomize=True``; a bounded number of messages)
draws MQTT messages: good readings and batches, random JSON values, raw
bytes, batches mixing good and bad items, and odd topics under the
namespace. After they are published through one gateway: every good reading
is in Kafka exactly once, every bad message or batch item has its dead
letter, nothing else came out, and the gateway still takes a reading.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings as hsettings, strategies as st

from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, Reading, format_ts, kind_fields, mqtt_topic, readings_topic
from cityeye.reading_records import readings_in
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from ingest.readback import read_until as consume
from simulators import DEMO_REGISTRY
from tests.test_gateway import ms, publish, wait_for
from tests.test_gateway_hostile_input import with_client_id

pytestmark = pytest.mark.timeout(240)

SENSORS = [s for s in load_registry(DEMO_REGISTRY)]
#: examples x messages: 300 messages in all (the first example is Hypothesis's simplest: all good)
EXAMPLES, MESSAGES = 6, 50

_topic_char = st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="+#/")
_level = st.text(_topic_char, max_size=12)
odd_topics = st.one_of(
    st.lists(_level, min_size=0, max_size=6).map(lambda levels: "/".join(["cityeye", *levels])),
    st.lists(_level, min_size=3, max_size=3).map(lambda levels: "/" + "/".join(["cityeye", *levels])),
    st.sampled_from(["cityeye/../x", "cityeye/huangpu/WATER_LEVEL/wl-huangpu-01",
                     "cityeye/huangpu/water_level/wl-huangpu-01/x"]),
)
#: text with lone surrogates too (json.dumps escapes them as "\\ud800"; st.text() alone never draws them)
_text = st.text(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=20)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), _text)
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
raw_bytes = st.binary(max_size=120).filter(lambda b: not b.lstrip().startswith(b"["))


@dataclass
class Plan:
    """What was published and what must come out of it."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    good: set[tuple[str, float, float]] = field(default_factory=set)  # sensor, ts (ms), main value
    bad_whole: list[tuple[str, bytes]] = field(default_factory=list)  # one dead letter with these bytes
    bad_items: set[str] = field(default_factory=set)  # fuzz ids of refused batch items


def main_field(sensor) -> tuple[str, float, float]:
    name, spec = next(iter(kind_fields(sensor.kind).items()))
    return name, spec.low, spec.high


@st.composite
def plans(draw, base: float) -> Plan:
    plan = Plan()
    counter = iter(range(10**6))

    def good_item(sensor) -> dict:
        name, low, high = main_field(sensor)
        ts = base + next(counter)
        value = draw(st.floats(low, high, allow_nan=False).map(lambda v: round(v, 3)))
        plan.good.add((sensor.id, ms(ts), value))
        return {"ts": draw(st.sampled_from([format_ts(ts), int(round(ts * 1000))])), "values": {name: value}}

    def bad_item(sensor) -> dict:
        fuzz_id = f"f{next(counter)}"
        plan.bad_items.add(fuzz_id)
        name, low, high = main_field(sensor)
        broken = draw(st.sampled_from(["not_a_number", "no_ts", "bad_ts", "out_of_range", "unknown_field"]))
        item = {"ts": format_ts(base), "values": {name: low}, "fuzz_id": fuzz_id}
        if broken == "not_a_number":
            item["values"][name] = draw(st.one_of(st.none(), st.booleans(), _text, st.lists(st.integers())))
        elif broken == "no_ts":
            del item["ts"]
        elif broken == "bad_ts":
            item["ts"] = "x" + draw(_text)
        elif broken == "out_of_range":
            item["values"][name] = high + draw(st.floats(1, 1e6))
        else:
            item["values"]["fuzz_" + draw(st.text("abcxyz", min_size=1, max_size=6))] = 1.0
        return item

    for _ in range(MESSAGES):
        sensor = draw(st.sampled_from(SENSORS))
        topic = mqtt_topic(sensor.district, sensor.kind, sensor.id)
        shape = draw(st.sampled_from(["good", "batch", "mixed", "json", "bytes", "topic"]))
        if shape == "good":
            payload = json.dumps(good_item(sensor)).encode()
        elif shape in ("batch", "mixed"):
            size = draw(st.integers(1, 6))
            items = [bad_item(sensor) if shape == "mixed" and draw(st.booleans()) else good_item(sensor)
                     for _ in range(size)]
            payload = json.dumps(items).encode()
        else:
            if shape == "topic":
                topic = draw(odd_topics)
                name, low, _ = main_field(sensor)  # a good reading, on a topic no reading may come from
                payload = json.dumps({"ts": format_ts(base), "values": {name: low}}).encode()
            elif shape == "json":
                payload = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, list)))).encode()
            else:
                payload = draw(raw_bytes)
            plan.bad_whole.append((topic, payload))
        plan.messages.append((topic, payload))
    return plan


def check(plan: Plan, readings: list[Reading], letters: list[DeadLetter]) -> None:
    got = [(r.sensor_id, r.ts, next(iter(r.values.values()))) for r in readings]
    assert sorted(got) == sorted(plan.good), "good readings missing or extra"
    exact = {(d.mqtt_topic, base64.b64decode(d.payload_b64)) for d in letters}
    missing = [m for m in plan.bad_whole if m not in exact]
    assert not missing, f"bad messages without a dead letter: {missing[:5]}"
    item_ids = set()
    for d in letters:
        if "batch item" in d.reason:
            item_ids.add(json.loads(d.payload)["fuzz_id"])
    assert item_ids == plan.bad_items
    assert len(letters) == len(plan.bad_whole) + len(plan.bad_items)


_round = iter(range(10**6))


@hsettings(derandomize=True, max_examples=EXAMPLES, deadline=None, phases=(Phase.explicit, Phase.generate),
           suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_messages_never_stop_the_gateway_and_each_is_accounted_for(settings, data):
    import asyncio

    # each example has its own time window, so its readings are told apart from earlier examples'
    base = float(int(time.time()) - 3600 * (1 + next(_round)))
    plan = data.draw(plans(base))
    note(f"{len(plan.messages)} messages: {plan.messages[:10]} ...")
    asyncio.run(_run(settings, plan, base))


async def _run(settings, plan: Plan, base: float) -> None:
    gateway = Gateway(with_client_id(settings, f"gw-{uuid.uuid4().hex[:6]}"), load_registry(settings.registry))
    started = time.time()
    await gateway.start()
    try:
        await publish(settings, plan.messages)
        await wait_for(lambda: gateway.stats()["messages"] == len(plan.messages), timeout=60)
        # still alive: one more reading goes through
        probe = SENSORS[0]
        probe_ts = base + 3000.5
        await publish(settings, [(mqtt_topic(probe.district, probe.kind, probe.id),
                                  json.dumps({"ts": format_ts(probe_ts), "values": {main_field(probe)[0]: 1.0}}).encode())])
        await wait_for(lambda: gateway.stats()["messages"] == len(plan.messages) + 1, timeout=30)
        assert all(not t.done() for t in gateway._tasks)
    finally:
        await gateway.stop()
    topics = sorted({readings_topic(s.kind) for s in SENSORS}) + [TOPIC_DEADLETTER]
    window = (base - 1, base + 2999)
    expected_letters = len(plan.bad_whole) + len(plan.bad_items)

    def mine(out):
        readings = [r for t in topics[:-1] for r in readings_in(out[t])
                    if window[0] <= r.ts <= window[1]]
        letters = [d for d in map(lambda m: DeadLetter.from_json(m.value), out[TOPIC_DEADLETTER])
                   if d.received_at >= started]  # the examples run one after the other
        return readings, letters

    got = await consume(settings.kafka, topics, lambda o: (lambda r, d: len(r) >= len(plan.good)
                                                           and len(d) >= expected_letters)(*mine(o)))
    readings, letters = mine(got)
    print(f"fuzz example: {len(plan.messages)} messages, {len(readings)} readings, {len(letters)} dead letters "
          f"({len(plan.bad_whole)} whole messages, {len(plan.bad_items)} batch items)")
    check(plan, readings, letters)

