"""The dispatcher's HTTP API over a real loopback server: auth, errors, actions, silences."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from alerts.notification import Notification, Notifier
from alerts.runtime.delivery import DeliveryManager
from alerts.web.api import create_app
from alerts.pipeline.dispatch_engine import Engine
from alerts.runtime.store import Store
from cityeye.errors import ConfigError, PermanentDeliveryError
from tests.alerting_helpers import config, event

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_TOKEN = "read-only-token-for-tests"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture
async def api(tmp_path):
    engine = Engine(config(api={"token": TOKEN, "read_tokens": [READ_TOKEN]}), Store(tmp_path / "s.sqlite"))
    clock = [100.0]
    with engine.store.transaction():
        engine.apply_event(event("wl-01", severity="red", district="pudong"), 100.0)
        engine.apply_event(event("tr-01", severity="yellow", district="minhang", kind="traffic", rule="jam"), 100.0)
    runner = web.AppRunner(create_app(engine, engine.cfg.api, clock=lambda: clock[0]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}", headers=READ) as http:
        yield http, engine, clock
    await runner.cleanup()


def alert_id(engine: Engine, sensor: str) -> str:
    return next(a.alert_id for a in engine.active.values() if a.sensor_id == sensor)


async def test_list_and_filter(api):
    http, engine, _ = api
    async with http.get("/api/v1/alerts") as r:
        assert r.status == 200 and (await r.json())["total"] == 2
    async with http.get("/api/v1/alerts", params={"severity": "red", "state": "firing"}) as r:
        assert [a["sensor_id"] for a in (await r.json())["alerts"]] == ["wl-01"]
    async with http.get("/api/v1/alerts", params={"district": "minhang", "kind": "traffic"}) as r:
        assert [a["sensor_id"] for a in (await r.json())["alerts"]] == ["tr-01"]
    async with http.get("/api/v1/alerts", params={"limit": "many"}) as r:
        assert r.status == 422


async def test_write_actions_need_the_bearer_token(api):
    http, engine, _ = api
    aid = alert_id(engine, "wl-01")
    for headers, status in (({"Authorization": ""}, 401), ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": TOKEN}, 401), (READ, 403)):
        async with http.post(f"/api/v1/alerts/{aid}/ack", json={"by": "x"}, headers=headers) as r:
            assert r.status == status
            body = await r.json()
            assert TOKEN not in str(body) and READ_TOKEN not in str(body) and body["error"]["status"] == status
    assert engine.active["wl-01|level_warning"].acknowledged_by is None


async def test_reads_need_a_read_token_or_the_write_token(api):
    http, engine, _ = api
    aid = alert_id(engine, "wl-01")
    paths = ["/api/v1/alerts", f"/api/v1/alerts/{aid}", "/api/v1/silences", "/api/v1/status"]
    for path in paths:
        for headers, status in (({"Authorization": ""}, 401), ({"Authorization": "Bearer wrong"}, 401),
                                (READ, 200), (AUTH, 200)):
            async with http.get(path, headers=headers) as r:
                assert r.status == status, (path, headers)
                body = await r.json()
                assert status == 200 or ("sensor_id" not in str(body) and body["error"]["status"] == 401)
    async with http.get("/api/v1/openapi.json", headers={"Authorization": ""}) as r:
        assert r.status == 200 and (await r.json())["security"] == [{"bearer": []}]


async def test_without_any_token_configured_reads_are_refused(tmp_path):
    engine = Engine(config(), Store(tmp_path / "s.sqlite"))
    runner = web.AppRunner(create_app(engine, engine.cfg.api))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as http:
            async with http.get("/api/v1/alerts", headers=READ) as r:
                assert r.status == 401 and "reading is disabled" in (await r.json())["error"]["message"]
    finally:
        await runner.cleanup()


async def test_ack_assign_comment_resolve_and_timeline(api):
    http, engine, clock = api
    aid = alert_id(engine, "wl-01")
    async with http.post(f"/api/v1/alerts/{aid}/ack", json={"by": "officer-li", "comment": "on it"}, headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["status"] == "acknowledged"
    async with http.post(f"/api/v1/alerts/{aid}/ack", json={"by": "officer-li"}, headers=AUTH) as r:
        assert r.status == 409
    async with http.post(f"/api/v1/alerts/{aid}/assign", json={"by": "officer-li", "assignee": "crew-7"},
                         headers=AUTH) as r:
        assert (await r.json())["assignee"] == "crew-7"
    async with http.post(f"/api/v1/alerts/{aid}/comment", json={"by": "crew-7", "text": "pump started"},
                         headers=AUTH) as r:
        assert r.status == 200
    clock[0] = 200.0
    async with http.post(f"/api/v1/alerts/{aid}/resolve", json={"by": "crew-7"}, headers=AUTH) as r:
        assert (await r.json())["state"] == "resolved"
    async with http.post(f"/api/v1/alerts/{aid}/resolve", json={"by": "crew-7"}, headers=AUTH) as r:
        assert r.status == 409
    async with http.get(f"/api/v1/alerts/{aid}") as r:
        got = await r.json()
    assert [(e["action"], e["actor"]) for e in got["timeline"]] == [
        ("raised", "system"), ("acknowledged", "officer-li"), ("assigned", "officer-li"),
        ("commented", "crew-7"), ("resolved", "crew-7")]
    assert got["ended_at"] == 200.0


async def test_clear_errors(api):
    http, engine, _ = api
    aid = alert_id(engine, "wl-01")
    async with http.get("/api/v1/alerts/nope") as r:
        assert r.status == 404 and "nope" in (await r.json())["error"]["message"]
    async with http.post("/api/v1/alerts/nope/ack", json={"by": "x"}, headers=AUTH) as r:
        assert r.status == 404
    async with http.post(f"/api/v1/alerts/{aid}/ack", data=b"{oops", headers=AUTH) as r:
        assert r.status == 400
    async with http.post(f"/api/v1/alerts/{aid}/assign", json={"by": "x"}, headers=AUTH) as r:
        assert r.status == 422 and "assignee" in (await r.json())["error"]["message"]
    async with http.post(f"/api/v1/alerts/{aid}/ack", json={"by": "x", "admin": True}, headers=AUTH) as r:
        assert r.status == 422 and "admin" in (await r.json())["error"]["message"]
    async with http.post(f"/api/v1/alerts/{aid}/comment", data=b"x" * 100_000, headers=AUTH) as r:
        assert r.status == 413
    async with http.get("/api/v1/nothing") as r:
        assert r.status == 404 and "error" in await r.json()


async def test_silences_create_list_expire(api):
    http, engine, clock = api
    body = {"matchers": ["district=pudong", {"label": "severity", "op": "=~", "value": "orange|red"}],
            "duration": "2h", "created_by": "officer-wang", "comment": "pump station maintenance"}
    async with http.post("/api/v1/silences", json=body, headers=AUTH) as r:
        assert r.status == 201
        sid = (await r.json())["id"]
    assert engine.active["wl-01|level_warning"].status == "silenced"
    assert engine.active["tr-01|jam"].status == "active"
    async with http.get("/api/v1/silences") as r:
        assert [(s["id"], s["state"]) for s in (await r.json())["silences"]] == [(sid, "active")]
    clock[0] = 150.0
    async with http.delete(f"/api/v1/silences/{sid}", headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["state"] == "expired"
    assert engine.active["wl-01|level_warning"].status == "active"
    async with http.delete(f"/api/v1/silences/{sid}", headers=AUTH) as r:
        assert r.status == 409
    for bad, field in [({**body, "matchers": ["district~pudong"]}, "matchers"),
                       ({**body, "matchers": ["rule=~(unclosed"]}, "regular expression"),
                       ({k: v for k, v in body.items() if k != "duration"}, "ends_at or duration"),
                       ({**body, "starts_at": "2026-01-01T00:00:00"}, "starts_at")]:
        async with http.post("/api/v1/silences", json=bad, headers=AUTH) as r:
            assert r.status == 422 and field in (await r.json())["error"]["message"], await r.text()


async def test_openapi_describes_every_route(api):
    http, _, _ = api
    async with http.get("/api/v1/openapi.json") as r:
        spec = await r.json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {"/api/v1/alerts", "/api/v1/alerts/{id}", "/api/v1/alerts/{id}/ack",
                                  "/api/v1/alerts/{id}/assign", "/api/v1/alerts/{id}/resolve",
                                  "/api/v1/alerts/{id}/comment", "/api/v1/silences", "/api/v1/silences/{id}"}
    assert spec["paths"]["/api/v1/silences/{id}"]["delete"]["security"] == [{"bearer": []}]


def test_api_settings_from_the_environment_override_the_file(monkeypatch, tmp_path):
    from alerts.config import load_alerting_config

    path = tmp_path / "alerting.yaml"
    path.write_text("receivers: [{name: desk, type: webhook, url: 'http://127.0.0.1:9/x'}]\n"
                    "route: {receiver: desk}\napi: {host: 127.0.0.1, port: 9094}\n")
    assert load_alerting_config(path).api.token is None
    monkeypatch.setenv("CITYEYE_API_TOKEN", "s3cret-token")
    monkeypatch.setenv("CITYEYE_API_HOST", "0.0.0.0")
    monkeypatch.setenv("CITYEYE_API_PORT", "8080")
    cfg = load_alerting_config(path)
    assert cfg.api.token.get_secret_value() == "s3cret-token"
    assert (cfg.api.host, cfg.api.port) == ("0.0.0.0", 8080)
    assert "s3cret" not in repr(cfg)
    monkeypatch.setenv("CITYEYE_API_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="api.port"):
        load_alerting_config(path)


class _Refusing(Notifier):
    """A receiver that refuses for good (HTTP 404), then, once fixed, takes everything."""

    def __init__(self) -> None:
        self.name, self.fixed, self.sent = "desk", False, []

    async def send(self, notification: Notification) -> None:
        if not self.fixed:
            raise PermanentDeliveryError("HTTP 404", status=404)
        self.sent.append(notification.id)


async def test_operator_lists_and_replays_dead_notifications(api):
    http, engine, clock = api
    with engine.store.transaction():
        engine.tick(100.0)
    notifier = _Refusing()
    manager = DeliveryManager(engine, {"desk": notifier}, engine.cfg.delivery, clock=lambda: clock[0])
    rows = engine.store.outbox_due("desk", float("inf"))
    assert rows and all([await manager.deliver_one(r, notifier) == "dead" for r in rows])
    async with http.get("/api/v1/notifications/dead") as r:
        listed = await r.json()
    assert r.status == 200 and listed["total"] == len(rows)
    dead = listed["notifications"][0]
    assert dead["state"] == "dead" and dead["reason"].startswith("permanent failure: HTTP 404")
    assert dead["notification"]["receiver"] == "desk"
    path = f"/api/v1/notifications/dead/{dead['id']}/replay"
    async with http.post(path, json={"by": "officer-li"}) as r:
        assert r.status == 403  # the session's read token
    async with http.post(path, json={"by": "officer-li"}, headers=AUTH) as r:
        replayed = await r.json()
        assert r.status == 200 and (replayed["state"], replayed["replayed_by"]) == ("replayed", "officer-li")
    [row] = engine.store.outbox_due("desk", 0.0)  # due at once
    notifier.fixed = True
    assert await manager.deliver_one(row, notifier) == "delivered" and notifier.sent == [dead["id"]]
    async with http.get("/api/v1/notifications/dead", params={"state": "delivered"}) as r:
        assert [d["id"] for d in (await r.json())["notifications"]] == [dead["id"]]
    async with http.post(path, json={"by": "officer-li"}, headers=AUTH) as r:
        assert r.status == 409
    async with http.post("/api/v1/notifications/dead/nope/replay", json={"by": "x"}, headers=AUTH) as r:
        assert r.status == 404
    async with http.get("/api/v1/notifications/dead", params={"state": "lost"}) as r:
        assert r.status == 422
