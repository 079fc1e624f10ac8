"""CAP 1.2 notifier: messages validate against the OASIS XSD; HTTP and directory delivery."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import xmlschema

from alerts.notifiers import build_notifier
from alerts.notifiers.cap_message import CAP_NS, CAP_XSD
from alerts.notifiers.http import SIGNATURE_HEADER, verify_signature
from cityeye.errors import ConfigError
from tests.alerting_helpers import Receiver
from tests.notify_helpers import sample_alert, sample_notification

NS = {"cap": CAP_NS}
SENDER = "cityeye@ops.example.cn"


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(CAP_XSD))


def cap_notifier(tmp_path, **kw):
    config = {"name": "cap-feed", "type": "cap", "sender": SENDER, "directory": str(tmp_path / "cap"),
              "languages": ["zh-CN", "en-US"]}
    config.update(kw)
    return build_notifier(config)


def parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def texts(root: ET.Element, path: str) -> list[str]:
    return [e.text for e in root.findall(path, NS)]


def test_the_schema_is_the_oasis_cap_1_2_schema(schema):
    assert schema.target_namespace == CAP_NS
    # the smallest valid CAP 1.2 alert: the required header elements, in the schema's order
    minimal = (f'<alert xmlns="{CAP_NS}"><identifier>x</identifier><sender>{SENDER}</sender>'
               "<sent>2025-06-15T15:07:41+00:00</sent><status>Actual</status><msgType>Alert</msgType>"
               "<scope>Public</scope></alert>")
    schema.validate(minimal)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema.validate(f'<alert xmlns="{CAP_NS}"><identifier>x</identifier></alert>')
    for tag, wrong in (("status", "Real"), ("msgType", "Notice"), ("sent", "yesterday")):
        bad = re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{wrong}</{tag}>", minimal)
        assert bad != minimal and not schema.is_valid(bad), f"{tag} {wrong!r} is not CAP 1.2"


async def test_alert_update_cancel_sequence_validates_and_references(tmp_path, schema):
    notifier = cap_notifier(tmp_path)
    weather = sample_alert(2, kind="weather", rule="forecast_rainstorm", severity="red", sensor_id="ws-2",
                           lat=None, lon=None, value=None, threshold=None)
    first = sample_notification(1, alerts=[sample_alert(1, severity="yellow"), weather])
    await notifier.send(first)
    update = sample_notification(2, previous_ids=[first.id], created_at=1_750_000_400.0,
                                 alerts=[sample_alert(1, severity="red")])
    await notifier.send(update)
    cancel = sample_notification(3, status="resolved", previous_ids=[first.id, update.id], created_at=1_750_000_900.0,
                                 alerts=[sample_alert(1, state="resolved", severity="red")])
    await notifier.send(cancel)
    await notifier.close()

    files = {p.stem: p.read_bytes() for p in (tmp_path / "cap").glob("*.xml")}
    assert set(files) == {first.id, update.id, cancel.id}
    for xml in files.values():
        schema.validate(xml.decode())

    a = parse(files[first.id])
    assert texts(a, "cap:msgType") == ["Alert"] and texts(a, "cap:identifier") == [first.id]
    assert texts(a, "cap:sent") == ["2025-06-15T15:07:41+00:00"] and texts(a, "cap:status") == ["Actual"]
    assert texts(a, "cap:scope") == ["Public"] and not a.findall("cap:references", NS)
    infos = a.findall("cap:info", NS)
    assert len(infos) == 4, "one info per alert per language"
    assert [texts(i, "cap:language")[0] for i in infos] == ["zh-CN", "zh-CN", "en-US", "en-US"]
    water, rain = infos[0], infos[1]
    assert texts(water, "cap:category") == ["Env", "Infra"] and texts(rain, "cap:category") == ["Met"]
    assert texts(water, "cap:severity") == ["Moderate"] and texts(water, "cap:urgency") == ["Expected"]
    assert texts(water, "cap:certainty") == ["Observed"]
    assert texts(rain, "cap:severity") == ["Extreme"] and texts(rain, "cap:urgency") == ["Immediate"]
    assert texts(rain, "cap:certainty") == ["Likely"], "forecast rules are Likely"
    assert texts(water, "cap:area/cap:circle") == ["31.239700,121.490500 1"]
    assert "外滩水位站" in texts(water, "cap:area/cap:areaDesc")[0]
    assert "<4.0 m> & rising" in texts(water, "cap:description")[0]

    u = parse(files[update.id])
    assert texts(u, "cap:msgType") == ["Update"]
    assert texts(u, "cap:references") == [f"{SENDER},{first.id},2025-06-15T15:07:41+00:00"]
    assert texts(u, "cap:incidents") == texts(a, "cap:incidents")

    c = parse(files[cancel.id])
    assert texts(c, "cap:msgType") == ["Cancel"]
    assert texts(c, "cap:references") == [
        f"{SENDER},{first.id},2025-06-15T15:07:41+00:00 {SENDER},{update.id},2025-06-15T15:13:20+00:00"]
    assert texts(c, "cap:info/cap:urgency") == ["Past", "Past"]
    assert texts(c, "cap:info/cap:responseType") == ["AllClear", "AllClear"]


async def test_references_survive_a_restart_through_the_sent_log(tmp_path):
    first = sample_notification(1, created_at=1_750_000_100.0)
    notifier = cap_notifier(tmp_path)
    await notifier.send(first)
    restarted = cap_notifier(tmp_path)
    update = sample_notification(2, previous_ids=[first.id], created_at=1_750_000_500.0)
    xml = parse(restarted.render(update))
    assert texts(xml, "cap:references") == [f"{SENDER},{first.id},2025-06-15T15:08:20+00:00"]
    # without any record the reference is still deterministic (the group's first alert start)
    fresh = cap_notifier(tmp_path / "other")
    assert fresh.render(update) == fresh.render(update)
    assert f"{first.id},2025-06-15T15:06:40+00:00" in texts(parse(fresh.render(update)), "cap:references")[0]


async def test_group_info_and_polygon(tmp_path, schema):
    polygon = "31.20,121.40 31.30,121.40 31.30,121.50 31.20,121.40"
    notifier = cap_notifier(tmp_path, info_per="group", languages=["en-US"], polygons={"huangpu": polygon},
                            radius_km=2.5)
    n = sample_notification(1, alerts=[sample_alert(1), sample_alert(2, sensor_id="wl-2", severity="red")])
    xml = notifier.render(n)
    schema.validate(xml.decode())
    root = parse(xml)
    (info,) = root.findall("cap:info", NS)
    assert texts(info, "cap:severity") == ["Extreme"]
    assert texts(info, "cap:area/cap:polygon") == [polygon, polygon]
    assert texts(info, "cap:area/cap:circle") == ["31.239700,121.490500 2.5"] * 2


async def test_posts_over_http_with_cap_content_type(schema):
    async with Receiver() as rx:
        notifier = build_notifier({"name": "cap-http", "type": "cap", "sender": SENDER, "url": rx.url(),
                                   "secret": "cap-secret"})
        n = sample_notification()
        await notifier.send(n)
        await notifier.close()
    (req,) = rx.requests
    assert req.headers["Content-Type"].startswith("application/cap+xml")
    assert req.headers["Idempotency-Key"] == n.id
    assert verify_signature(req.body, "cap-secret", req.headers[SIGNATURE_HEADER])
    schema.validate(req.body.decode())


@pytest.mark.parametrize("bad, field", [
    ({"sender": "has space"}, "sender"),
    ({"url": "http://x/y"}, "exactly one of url or directory"),
    ({"polygons": {"d": "1,2 3,4"}}, "polygons"),
    ({"languages": ["fr-FR"]}, "languages"),
])
def test_bad_config_names_the_field(tmp_path, bad, field):
    with pytest.raises(ConfigError, match=field):
        cap_notifier(tmp_path, **bad)


def test_hostile_text_still_validates(tmp_path, schema):
    nasty = "<script>&amp; \"quotes\" ]]> \ud800 \x00\x07 水位"
    notifier = cap_notifier(tmp_path)
    xml = notifier.render(sample_notification(alerts=[sample_alert(1, message=nasty, sensor_name=nasty)]))
    schema.validate(xml.decode())
    assert "<script>" in texts(parse(xml), "cap:info/cap:description")[0]


# -- what the rule is: texts per check type, device faults, the datum ------------------------------------------


def infos_of(tmp_path, alert, languages=("zh-CN", "en-US")) -> dict[str, ET.Element]:
    xml = cap_notifier(tmp_path, languages=list(languages)).render(sample_notification(alerts=[alert]))
    xmlschema.XMLSchema(str(CAP_XSD)).validate(xml.decode())
    return {texts(i, "cap:language")[0]: i for i in parse(xml).findall("cap:info", NS)}


@pytest.mark.parametrize("alert, zh, en, cap", [
    (dict(rule="water_level.warning", check_type="warning_levels", severity="yellow"),
     "黄色水位预警", "Yellow water level warning at huangpu 外滩水位站", ("Env Infra", "Expected", "Moderate", "Observed")),
    (dict(rule="water_level.rate_of_rise", check_type="rate_of_change"),
     "橙色水位快速上涨预警", "Orange rapid water level rise warning at", ("Env Infra", "Immediate", "Severe", "Observed")),
    (dict(rule="water_level.forecast", check_type="level_forecast", severity="blue", unit="m"),
     "蓝色水位预报：预计将达到4 m", "Blue water level forecast at huangpu 外滩水位站: predicted to reach 4 m",
     ("Env Infra", "Expected", "Minor", "Likely")),
    (dict(rule="water_level.stale", check_type="stale", severity="yellow"),
     "传感器故障：水位数据中断", "Sensor fault at huangpu 外滩水位站: no data from the water level sensor",
     ("Infra", "Unknown", "Minor", "Observed")),
    (dict(rule="water_level.flatline", check_type="flatline", severity="blue"),
     "传感器故障：水位读数停滞", "Sensor fault at huangpu 外滩水位站: water level reading stuck",
     ("Infra", "Unknown", "Minor", "Likely")),
    (dict(kind="weather", rule="weather.rainstorm", check_type="rainfall_accumulation", severity="red"),
     "红色暴雨预警", "Red rainstorm warning at", ("Met", "Immediate", "Extreme", "Observed")),
    (dict(kind="weather", rule="weather.high_temperature", check_type="sustained_condition"),
     "橙色高温预警", "Orange high temperature warning at", ("Met", "Immediate", "Severe", "Observed")),
    (dict(kind="weather", rule="weather.wind", check_type="wind_beaufort", severity="blue"),
     "蓝色大风预警", "Blue gale warning at", ("Met", "Expected", "Minor", "Observed")),
    (dict(kind="traffic", rule="traffic.speed_anomaly", check_type="anomaly", severity="yellow"),
     "黄色交通异常", "Yellow traffic anomaly at", ("Transport", "Expected", "Moderate", "Possible")),
    # a rule of a type or kind without texts of its own: the kind's generic text naming the rule
    (dict(kind="air_quality", rule="air_quality.pm25_band", check_type="aqi_band", severity="red"),
     "红色空气质量预警", "Red air quality warning at", ("Other", "Immediate", "Extreme", "Observed")),
])
def test_headline_event_and_profile_name_the_rule(tmp_path, alert, zh, en, cap):
    infos = infos_of(tmp_path, sample_alert(1, **alert))
    assert zh in texts(infos["zh-CN"], "cap:headline")[0]
    assert texts(infos["en-US"], "cap:headline")[0].startswith(en)
    for info in infos.values():
        got = (" ".join(texts(info, "cap:category")), *(texts(info, f"cap:{tag}")[0]
                                                        for tag in ("urgency", "severity", "certainty")))
        assert got == cap
        assert alert["rule"] in texts(info, "cap:description")[0], "the description names the rule"
        assert texts(info, "cap:eventCode/cap:value") == [alert["rule"]]
    device = alert["check_type"] in ("stale", "flatline")
    assert (texts(infos["en-US"], "cap:responseType") == ["None"]) == device, "no public action for a device fault"
    assert ("warning" in texts(infos["en-US"], "cap:headline")[0].lower()) == (not device and "anomaly" not in alert["rule"]
                                                                               and "forecast" not in alert["rule"])


def test_a_stale_sensor_is_a_sensor_fault_even_from_an_event_without_a_check_type(tmp_path):
    """Events of an older worker carry no check_type: the shipped check names are recognised."""
    infos = infos_of(tmp_path, sample_alert(1, rule="water_level.stale", severity="yellow", value=1500.0,
                                            threshold=300.0, message="no data for 25 min"))
    en = infos["en-US"]
    assert texts(en, "cap:headline") == ["Sensor fault at huangpu 外滩水位站: no data from the water level sensor"]
    assert texts(en, "cap:event") == ["Sensor fault: no data"] and texts(en, "cap:category") == ["Infra"]
    assert "not a water level warning" in texts(en, "cap:description")[0]
    assert "observed 25 min; threshold 5 min" in texts(en, "cap:description")[0]
    assert "Yellow" not in texts(en, "cap:headline")[0]
    assert texts(infos["zh-CN"], "cap:headline") == ["huangpu 外滩水位站传感器故障：水位数据中断"]
    assert "观测值 25分钟" in texts(infos["zh-CN"], "cap:description")[0]


def test_levels_are_quoted_with_the_gauge_unit_and_datum(tmp_path):
    gauge = dict(rule="water_level.warning", check_type="warning_levels", severity="yellow", value=4.62,
                 threshold=4.5, unit="m", datum="Wusong datum", message="level 4.62 m ≥ warning level 4.50 m")
    infos = infos_of(tmp_path, sample_alert(1, **gauge))
    assert "observed 4.62 m (Wusong datum); threshold 4.5 m (Wusong datum)" in texts(infos["en-US"], "cap:description")[0]
    assert "观测值 4.62 m（Wusong datum）" in texts(infos["zh-CN"], "cap:description")[0]
    forecast = infos_of(tmp_path, sample_alert(1, **{**gauge, "rule": "water_level.forecast",
                                                     "check_type": "level_forecast"}), ["en-US"])["en-US"]
    assert texts(forecast, "cap:headline")[0].endswith("predicted to reach 4.5 m (Wusong datum)")
    rate = infos_of(tmp_path, sample_alert(1, **{**gauge, "rule": "water_level.rate_of_rise", "value": 0.35,
                                                 "threshold": 0.3, "check_type": "rate_of_change"}), ["en-US"])
    assert "observed 0.35 m/h; threshold 0.30 m/h" in texts(rate["en-US"], "cap:description")[0], "a rate has no datum"


def test_the_worker_carries_rule_type_datum_and_unit_from_the_registry_to_the_cap_message(tmp_path):
    from alerts.model import Alert
    from cityeye.contracts import Reading
    from cityeye.sensor_registry import parse_registry
    from streams.sensor_engine import SensorEngine

    registry = parse_registry(
        "sensors:\n  - {id: g1, kind: water_level, district: huangpu, name: Gauge one, lat: 31.2, lon: 121.5,\n"
        "     datum: Wusong datum, levels: {warning_m: 4.5, guaranteed_m: 5.2}}\n", "reg.yaml")
    engine = SensorEngine(registry)
    events = []
    for i, level in enumerate([4.0] + [4.62] * 4):  # the warning level holds 2 min
        events += engine.process(Reading(sensor_id="g1", kind="water_level", district="huangpu", ts=60.0 * i,
                                         values={"level_m": level}, received_at=60.0 * i,
                                         mqtt_topic="cityeye/huangpu/water_level/g1"), position=i)
    (warning,) = [e for e in events if e.rule == "water_level.warning"]
    (stale,) = engine.tick(10_000.0)
    assert {k: warning.labels[k] for k in ("check_type", "datum", "unit")} == {
        "check_type": "warning_levels", "datum": "Wusong datum", "unit": "m"}
    assert stale.labels["check_type"] == "stale"

    alerts = [Alert.from_event(e).snapshot() for e in (warning, stale)]
    assert (alerts[0].check_type, alerts[0].datum, alerts[0].unit) == ("warning_levels", "Wusong datum", "m")
    body = sample_notification(alerts=alerts).to_dict()
    assert body["alerts"][0]["datum"] == "Wusong datum" and body["alerts"][1]["check_type"] == "stale"
    assert "datum" not in sample_notification().to_dict()["alerts"][0], "left out when empty: stored rows unchanged"

    xml = cap_notifier(tmp_path, languages=["en-US"]).render(sample_notification(alerts=alerts))
    level_info, stale_info = parse(xml).findall("cap:info", NS)
    assert "observed 4.62 m (Wusong datum)" in texts(level_info, "cap:description")[0]
    assert texts(stale_info, "cap:headline") == ["Sensor fault at huangpu Gauge one: no data from the water level sensor"]
