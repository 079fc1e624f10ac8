"""SenML packs and vendor payloads over a real Mosquitto into a real Tansu broker, through the gateway."""

from __future__ import annotations

import json
import time

from cityeye.config import IngestSettings
from cityeye.contracts import TOPIC_DEADLETTER, DeadLetter, format_ts, readings_topic
from cityeye.reading_records import readings_in
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from ingest.mapping import SHIPPED_MAPPINGS
from ingest.readback import read_until
from tests.test_gateway import publish

MAPPINGS = [str(p) for p in SHIPPED_MAPPINGS]


async def test_senml_and_vendor_payloads_arrive_as_readings_and_broken_ones_as_dead_letters(settings):
    settings = settings.model_copy(update={"ingest": IngestSettings(mappings=MAPPINGS)})
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    now = round(time.time()) - 120
    senml = [{"bn": "urn:dev:ops:wl-huangpu-01:", "bt": now, "bu": "cm", "n": "level", "v": 462},
             {"n": "level", "t": 60, "v": 470.5}]
    acme = {"t": now, "lvl_cm": 318, "bat_mv": 3600}
    meteo = {"station": "wx-pudong-01", "batch": [
        {"time": format_ts(now), "sensors": [{"type": "rain", "value": 0.1}, {"type": "temp", "value": 77},
                                             {"type": "wind", "value": 10}]},
        {"time": format_ts(now + 60), "sensors": [{"type": "rain", "value": 0}, {"type": "temp", "value": 78.8},
                                                  {"type": "wind", "value": 5}]}]}
    loop = {"detId": "tr-jingan-01", "tsMs": now * 1000, "volume": 20, "avgSpd": 30, "occ": 0.2}
    broken_senml = [{"bn": "wl-huangpu-01:", "n": "level", "v": 4.2, "crc_": "ab12"}]
    broken_meteo = {"station": "wx-pudong-01", "obs": []}
    await publish(settings, [
        ("cityeye/huangpu/senml/wl-huangpu-01", json.dumps(senml).encode()),
        ("acme/gauge/wl-minhang-01/up", json.dumps(acme).encode()),
        ("meteo/ws9-0042/obs", json.dumps(meteo).encode()),
        ("loopcount/jingan/lc4-17", json.dumps(loop).encode()),
        ("cityeye/huangpu/senml/wl-huangpu-01", json.dumps(broken_senml).encode()),
        ("meteo/ws9-0042/obs", json.dumps(broken_meteo).encode()),
    ])
    wl, wx, tr = readings_topic("water_level"), readings_topic("weather"), readings_topic("traffic")
    got = await read_until(settings.kafka, [wl, wx, tr, TOPIC_DEADLETTER],
                           lambda o: (len(readings_in(o[wl])), len(readings_in(o[wx])), len(readings_in(o[tr])),
                                      len(o[TOPIC_DEADLETTER])) >= (3, 2, 1, 2))
    await gateway.stop()

    def readings(topic):
        return sorted(((r.sensor_id, r.ts, r.values) for r in readings_in(got[topic])),
                      key=lambda r: (r[0], r[1]))

    assert readings(wl) == [("wl-huangpu-01", now, {"level_m": 4.62}), ("wl-huangpu-01", now + 60, {"level_m": 4.705}),
                            ("wl-minhang-01", now, {"level_m": 3.18})]
    weather = readings(wx)
    assert [(s, ts) for s, ts, _ in weather] == [("wx-pudong-01", now), ("wx-pudong-01", now + 60)]
    assert weather[0][2]["rain_mm"] == 2.54 and round(weather[1][2]["temp_c"], 6) == 26.0
    assert round(weather[0][2]["wind_ms"], 4) == 4.4704
    assert readings(tr) == [("tr-jingan-01", now, {"flow_vph": 1200.0, "speed_kmh": 48.28032, "occupancy_pct": 20.0})]
    assert {r.mqtt_topic for r in readings_in(got[wl])} == {
        "cityeye/huangpu/senml/wl-huangpu-01", "acme/gauge/wl-minhang-01/up"}

    letters = sorted((DeadLetter.from_json(m.value) for m in got[TOPIC_DEADLETTER]), key=lambda d: d.mqtt_topic)
    assert [(d.mqtt_topic, d.sensor_id, d.reason) for d in letters] == [
        ("cityeye/huangpu/senml/wl-huangpu-01", "wl-huangpu-01",
         "senml_invalid: record 0: unknown must-understand key 'crc_'"),
        ("meteo/ws9-0042/obs", None,
         "mapping_failed: meteo-station: readings batch[]: found nothing, not a list of readings"),
    ]
    assert json.loads(letters[1].payload) == broken_meteo
    stats = gateway.stats()
    assert stats["accepted_by_kind"] == {"water_level": 3, "weather": 2, "traffic": 1}
    assert stats["dead_lettered"] == {"senml_invalid": 1, "mapping_failed": 1}
