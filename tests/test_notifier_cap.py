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
