"""No SenML pack or vendor payload can break the decoders: every message gives readings or dead letters
the gateway can encode for Kafka (property-based, fixed seed, bounded count)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from cityeye.contracts import DeadLetter, Reading
from cityeye.sensor_registry import load_registry
from ingest.formats import DeviceFormats
from ingest.kafka_delivery import encode as _encode
from ingest.mapping import SHIPPED_MAPPINGS, load_mapping
from simulators import DEMO_REGISTRY

NOW = 1782907200.0
FORMATS = DeviceFormats(load_registry(DEMO_REGISTRY), [load_mapping(p) for p in SHIPPED_MAPPINGS])
TOPICS = ["cityeye/huangpu/senml/wl-huangpu-01", "cityeye/pudong/senml/wx-pudong-01", "cityeye/x/senml/ghost",
          "acme/gauge/wl-huangpu-01/up", "acme/gauge/wx-pudong-01/up", "meteo/ws/obs", "loopcount/jingan/d1"]

numbers = st.one_of(st.integers(min_value=-(10 ** 400), max_value=10 ** 400), st.floats(allow_nan=False),
                    st.integers(min_value=-100, max_value=600),
                    st.sampled_from([0, 2 ** 28, NOW - 60, NOW, NOW * 1000, -1e308, 1e308, 10 ** 309]))
texts = st.one_of(st.text(max_size=12), st.sampled_from(["\ud800", "wl-huangpu-01:", "level", "cm", "Cel", "%RH",
                                                         "wx-pudong-01", "tr-jingan-01", "rain", "temp", "1.5",
                                                         "wl-huangpu-01", "battery_v", "2026-07-01T12:00:00Z"]))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
jsonish = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                       st.dictionaries(texts, kids, max_size=4)), max_leaves=12)
maybe = lambda good: st.one_of(good, good, good, scalars)  # noqa: E731  mostly well-typed, sometimes anything
good_record = st.fixed_dictionaries(
    {"n": st.sampled_from(["level", "level_m", "wl-huangpu-01:level", "temp", "rain", "wind", "battery_v"]),
     "v": st.one_of(st.integers(min_value=-100, max_value=600), numbers)},
    optional={"bn": st.sampled_from(["", "urn:dev:ops:wx-pudong-01:", "\ud800"]),
              "bt": st.sampled_from([NOW - 120, 0, -30]), "t": st.integers(min_value=-600, max_value=600),
              "u": st.sampled_from(["cm", "m", "Cel", "K", "km/h", "%RH", "mm", "furlong"])})
odd = st.dictionaries(st.sampled_from(["bv", "bver", "vs", "vb", "s", "x_", "vendor", "v", "n", "t", "u"]), scalars,
                      max_size=1)
senml_record = st.one_of(good_record, good_record, good_record, st.builds(lambda g, o: {**g, **o}, good_record, odd))
small = st.one_of(st.integers(min_value=0, max_value=500), st.floats(min_value=0, max_value=500), numbers)
acme = st.fixed_dictionaries({"t": maybe(st.sampled_from([NOW - 60, NOW, NOW + 3600])), "lvl_cm": maybe(small)},
                             optional={"bat_mv": maybe(small)})
meteo = st.fixed_dictionaries({"station": maybe(st.sampled_from(["wx-pudong-01", "\ud800", "wx ghost", "wl-huangpu-01"])),
                               "batch": st.lists(st.fixed_dictionaries({
                                   "time": maybe(st.sampled_from(["2026-07-01T11:59:00Z", "2026-07-01T19:59:00+08:00",
                                                                  "2026-07-01T11:59:00", "yesterday"])),
                                   "sensors": st.lists(st.fixed_dictionaries({
                                       "type": st.sampled_from(["rain", "temp", "wind", "rh"]), "value": maybe(small)}),
                                       max_size=5)}), max_size=3)})
loop = st.fixed_dictionaries({"detId": maybe(st.sampled_from(["tr-jingan-01", "tr-pudong-01", "\ud800", ""])),
                              "tsMs": maybe(st.sampled_from([NOW * 1000, 0, "1782907200000"])), "volume": maybe(small),
                              "avgSpd": maybe(small), "occ": maybe(st.floats(min_value=0, max_value=1.2))})
messages = st.one_of(
    st.tuples(st.sampled_from(TOPICS[:3]), st.lists(senml_record, min_size=1, max_size=6)),
    st.tuples(st.sampled_from(["acme/gauge/wl-huangpu-01/up", "acme/gauge/wx-pudong-01/up"]), acme),
    st.tuples(st.just("meteo/ws/obs"), meteo),
    st.tuples(st.sampled_from(["loopcount/jingan/d1", "loopcount/pudong/d2"]), loop),
    st.tuples(st.sampled_from(TOPICS), jsonish))


@seed(20261203)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages)
def test_any_payload_gives_encodable_readings_or_dead_letters(message):
    topic, payload = message
    raw = json.dumps(payload).encode()
    outcomes = FORMATS.validate(raw, topic, NOW)
    assert outcomes
    for outcome in outcomes:
        assert isinstance(outcome, (Reading, DeadLetter))
        _encode(outcome)  # what the gateway sends to Kafka: must not raise (lone surrogates, huge numbers)
        if outcome.sensor_id:
            outcome.sensor_id.encode()
        if isinstance(outcome, DeadLetter):
            assert ": " in outcome.reason
