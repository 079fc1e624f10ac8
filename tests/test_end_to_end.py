"""The whole path on real servers, started the way ``cityeye run`` starts them (with the cases service).

Simulator flood scenario → MQTT (Mosquitto) → gateway → Kafka (Tansu) →
Faust worker → ``alerts.events`` → InfluxDB writer (queried back from a real
influxd), webhook forwarder (a local HTTP receiver) and dispatcher (its
notification at the same receiver, its CAP 1.2 file in the work directory),
each part its own process.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
import yaml

from alerts.notifiers.cap_message import CAP_NS, CAP_XSD
from cityeye.sensor_registry import load_registry
from simulators import DEMO_REGISTRY
from launch.embedded import EmbeddedStack
from launch.embedded_cases import cap_polygons_for_alerting
from cases.store import CaseStore, make_engine
from launch.servers import free_port
from tests.alerting_helpers import Receiver, receiver_in_thread
from tests.sink_helpers import query

GAUGE = "wl-huangpu-01"
#: the receiver paths of the webhook forwarder (sinks) and of the dispatcher's webhook receiver
SINKS_PATH, DISPATCH_PATH = "hooks/cityeye", "dispatch"
NS = {"cap": CAP_NS}


class StackWithDispatchWebhook(EmbeddedStack):
    """``cityeye run`` as it is, plus a webhook receiver for ``GAUGE`` in the dispatcher's alerting config.

    Two routes go first for the gauge: the webhook (``continue``) and the
    example's ``duty-desk`` CAP receiver, both flushing on every change (the
    simulation runs at thousands of times real time, so the alert changes
    faster than the example's group intervals).
    """

    def __init__(self, *args, dispatch_url: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dispatch_url = dispatch_url

    def write_alerting_config(self) -> Path:
        path = super().write_alerting_config()
        alerting = yaml.safe_load(path.read_text(encoding="utf-8"))
        alerting["receivers"].append({"name": "dispatch-webhook", "type": "webhook", "url": self.dispatch_url})
        now = {"match": {"sensor": GAUGE}, "group_wait": "0s", "group_interval": "0s"}
        alerting["route"]["routes"][:0] = [{**now, "receiver": "dispatch-webhook", "continue": True},
                                           {**now, "receiver": "duty-desk"}]
        path.write_text(yaml.safe_dump(alerting, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path


def sink_posts(rx: Receiver) -> list[tuple[dict[str, str], dict]]:
    """``(headers, alert event)`` of each POST of the webhook forwarder."""
    return [(r.headers, json.loads(r.body)) for r in list(rx.requests) if r.path == f"/{SINKS_PATH}"]


def dispatched(rx: Receiver, alert_id: str) -> list[tuple[dict[str, str], dict, dict]]:
    """``(headers, notification, alert)`` for each dispatcher notification showing ``alert_id`` firing."""
    return [(r.headers, r.notification, a) for r in list(rx.requests) if r.path == f"/{DISPATCH_PATH}"
            for a in r.notification["alerts"] if a["alert_id"] == alert_id and a["state"] == "firing"]


def cap_infos(directory: Path, alert_id: str) -> list[tuple[Path, ET.Element]]:
    """``(file, info)`` for each CAP ``info`` about ``alert_id`` in the files of ``directory``."""
    found = []
    for path in sorted(directory.glob("*.xml")):
        for info in ET.parse(path).getroot().findall("cap:info", NS):
            params = {p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
                      for p in info.findall("cap:parameter", NS)}
            if params.get("CityEye:alert_ids") == alert_id:
                found.append((path, info))
    return found


def influx_rows(url: str, q: str) -> list[dict]:
    return query(url, "cityeye", q)


@pytest.fixture
def stack(tmp_path: Path, mqtt_broker, monkeypatch):
    monkeypatch.setattr("launch.embedded.mqtt_server", mqtt_broker)  # the tests' broker, no silent fallback
    with receiver_in_thread() as receiver:
        stack = StackWithDispatchWebhook(tmp_path / "stack", with_influx=True, api_port=free_port(),
                                         cases_port=free_port(),
                                         extra_config={"webhook": {"url": receiver.url(SINKS_PATH)}},
                                         dispatch_url=receiver.url(DISPATCH_PATH))
        stack.receiver = receiver
        yield stack
        stack.stop()


def test_simulated_flood_reaches_influxdb_the_webhook_and_the_dispatcher(stack):
    settings = stack.start_servers()
    assert settings.influx.enabled, "influxd must be installed for this test (scripts/bootstrap installs it)"
    stack.start_services()
    stack.start_simulators(speed=3000, scenario="flood", seed=7, duration_h=24)
    influx_url = settings.influx.url
    gauge = load_registry(DEMO_REGISTRY).get(GAUGE)
    levels = gauge.levels
    cap_dir = stack.workdir / "cap" / "duty-desk"

    def reached_every_output(alert_id: str) -> bool:
        hooked = {body.get("alert_id") for _, body in sink_posts(stack.receiver)}
        return alert_id in hooked and bool(dispatched(stack.receiver, alert_id)) and bool(cap_infos(cap_dir, alert_id))

    deadline = time.monotonic() + 180
    orange_rows: list[dict] = []
    while time.monotonic() < deadline:
        assert not stack.dead_parts(), f"parts died: {stack.dead_parts()}; logs in {stack.workdir}"
        orange_rows = influx_rows(
            influx_url,
            f"SELECT * FROM alert_events WHERE sensor='{GAUGE}' AND rule='water_level.warning' "
            "AND severity='orange' AND state='firing'")
        if orange_rows and reached_every_output(orange_rows[0]["alert_id"]):
            break
        time.sleep(1)
    assert orange_rows, f"no orange flood alert in InfluxDB; logs in {stack.workdir}"
    row = orange_rows[0]
    # orange = the guaranteed level 保证水位, crossed by the simulated flood
    assert row["threshold"] == pytest.approx(levels["guaranteed_m"])
    assert row["value"] >= levels["guaranteed_m"]
    assert row["district"] == "huangpu" and row["kind"] == "water_level"

    posts = [(h, b) for h, b in sink_posts(stack.receiver) if b.get("alert_id") == row["alert_id"]]
    assert posts, "the orange alert never reached the webhook"
    orange_posts = [(h, b) for h, b in posts if b["severity"] == "orange" and b["state"] == "firing"]
    assert orange_posts
    headers, body = orange_posts[0]
    assert headers["Idempotency-Key"] == body["event_id"] == row["event_id"]
    assert body["value"] == pytest.approx(row["value"])
    assert body["sensor_id"] == GAUGE

    # the dispatcher notified its webhook receiver of the alert, with the registry's sensor facts (the
    # severity it shows is the one at the flush: the simulated flood passes orange within a second)
    notified = dispatched(stack.receiver, row["alert_id"])
    assert notified, f"no dispatcher notification of the alert; logs in {stack.workdir}"
    headers, notification, alert = notified[0]
    assert headers["Idempotency-Key"] == notification["id"]
    assert notification["receiver"] == "dispatch-webhook" and notification["status"] == "firing"
    assert notification["group_labels"] == {"district": "huangpu", "kind": "water_level"}
    assert (alert["sensor_id"], alert["rule"], alert["district"]) == (GAUGE, "water_level.warning", "huangpu")
    assert (alert["sensor_name"], alert["lat"], alert["lon"]) == (gauge.name, gauge.lat, gauge.lon)

    # ... and its CAP notifier wrote a CAP 1.2 file for the duty desk with the alert in it
    infos = cap_infos(cap_dir, row["alert_id"])
    assert infos, f"no CAP file with the alert in {cap_dir}"
    schema = xmlschema.XMLSchema(str(CAP_XSD))
    for path in {path for path, _ in infos}:
        schema.validate(str(path))
    path, info = infos[0]
    assert ET.parse(path).getroot().findtext("cap:msgType", namespaces=NS) in {"Alert", "Update"}
    assert info.findtext("cap:eventCode/cap:value", namespaces=NS) == "water_level.warning"
    assert gauge.name in info.findtext("cap:area/cap:areaDesc", namespaces=NS)
    # the <area> is the polygon of the gauge's grid in the demo org (cases/demo_org.yaml), which contains it
    polygon = info.findtext("cap:area/cap:polygon", namespaces=NS)
    assert polygon == cap_polygons_for_alerting()[GAUGE]
    lats, lons = zip(*(map(float, point.split(",")) for point in polygon.split()))
    assert min(lats) < gauge.lat < max(lats) and min(lons) < gauge.lon < max(lons)

    # one alert per episode: every event of this gauge's warning rule shares the alert id
    # of the episode it belongs to, and escalation went yellow before orange
    episode = influx_rows(influx_url, f"SELECT value, severity, state FROM alert_events WHERE alert_id='{row['alert_id']}'")
    severities = [r["severity"] for r in episode if r["state"] == "firing"]
    assert severities.index("orange") > severities.index("yellow")

    # ... and the cases service (its own consumer group) filed a flooding case for the gauge's grid,
    # dispatched to the water authority at the district, with the orange alert linked
    store = CaseStore(make_engine(stack.cases_url))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cases = [c for c in store.list_cases() if c["unit"] == "310101002-01" and c["rule"] == "flooding"]
        linked = [a for c in cases for a in store.alerts_of(c["id"]) if a["alert_id"] == row["alert_id"]]
        if cases and linked:
            break
        time.sleep(1)
    assert [(c["department"], c["dispatch_unit"]) for c in cases] == [("water", "310101")], store.list_cases()
    assert "orange" in {a["severity"] for a in linked}
    store.engine.dispose()
