"""The whole path on real servers, started the way ``cityeye run`` starts them.

Simulator flood scenario → MQTT (Mosquitto) → gateway → Kafka (Tansu) →
Faust worker → ``alerts.events`` → InfluxDB writer (queried back from a real
influxd) and webhook forwarder (a local HTTP receiver), each part its own
process.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cityeye.sensor_registry import load_registry
from simulators import DEMO_REGISTRY
from launch.embedded import EmbeddedStack
from launch.servers import free_port
from tests.sink_helpers import query

GAUGE = "wl-huangpu-01"


class WebhookReceiver:
    """A local dispatch endpoint that records every POST."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/cityeye"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def influx_rows(url: str, q: str) -> list[dict]:
    return query(url, "cityeye", q)


@pytest.fixture
def stack(tmp_path: Path):
    receiver = WebhookReceiver()
    stack = EmbeddedStack(tmp_path / "stack", with_influx=True, api_port=free_port(),
                          extra_config={"webhook": {"url": receiver.url}})
    stack.receiver = receiver
    yield stack
    stack.stop()
    receiver.close()


def test_simulated_flood_reaches_influxdb_and_the_webhook(stack):
    settings = stack.start_servers()
    assert settings.influx.enabled, "influxd must be installed for this test (scripts/bootstrap installs it)"
    stack.start_services()
    stack.start_simulators(speed=3000, scenario="flood", seed=7, duration_h=24)
    influx_url = settings.influx.url
    levels = load_registry(DEMO_REGISTRY).get(GAUGE).levels

    deadline = time.monotonic() + 180
    orange_rows: list[dict] = []
    while time.monotonic() < deadline:
        assert not stack.dead_parts(), f"parts died: {stack.dead_parts()}; logs in {stack.workdir}"
        orange_rows = influx_rows(
            influx_url,
            f"SELECT * FROM alert_events WHERE sensor='{GAUGE}' AND rule='water_level.warning' "
            "AND severity='orange' AND state='firing'")
        hooked = {body.get("alert_id") for _, body in stack.receiver.requests}
        if orange_rows and orange_rows[0]["alert_id"] in hooked:
            break
        time.sleep(1)
    assert orange_rows, f"no orange flood alert in InfluxDB; logs in {stack.workdir}"
    row = orange_rows[0]
    # orange = the guaranteed level 保证水位, crossed by the simulated flood
    assert row["threshold"] == pytest.approx(levels["guaranteed_m"])
    assert row["value"] >= levels["guaranteed_m"]
    assert row["district"] == "huangpu" and row["kind"] == "water_level"

    posts = [(h, b) for h, b in stack.receiver.requests if b.get("alert_id") == row["alert_id"]]
    assert posts, "the orange alert never reached the webhook"
    orange_posts = [(h, b) for h, b in posts if b["severity"] == "orange" and b["state"] == "firing"]
    assert orange_posts
    headers, body = orange_posts[0]
    assert headers["Idempotency-Key"] == body["event_id"] == row["event_id"]
    assert body["value"] == pytest.approx(row["value"])
    assert body["sensor_id"] == GAUGE

    # one alert per episode: every event of this gauge's warning rule shares the alert id
    # of the episode it belongs to, and escalation went yellow before orange
    episode = influx_rows(influx_url, f"SELECT value, severity, state FROM alert_events WHERE alert_id='{row['alert_id']}'")
    severities = [r["severity"] for r in episode if r["state"] == "firing"]
    assert severities.index("orange") > severities.index("yellow")
