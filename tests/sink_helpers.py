"""Test helpers for the sinks: sample alert events, InfluxDB queries, webhook settings."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

from cityeye.config import WebhookSettings
from cityeye.contracts import AlertEvent
from tests.alerting_helpers import event

__all__ = ["SECRET", "make_event", "query", "hook_settings"]

#: the HMAC key of the test webhooks
SECRET = "fwd-hmac-secret"


def query(url: str, db: str, q: str) -> list[dict]:
    params = urllib.parse.urlencode({"db": db, "q": q})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=10) as r:
        result = json.load(r)["results"][0]
    rows = []
    for series in result.get("series", []):
        for values in series["values"]:
            rows.append(dict(zip(series["columns"], values)))
    return rows


def make_event(i: int = 0, **kw) -> AlertEvent:
    """Event ``i`` of the sinks' sample series: alert ``a{i}`` of gauge ``wl-{i}``, ``kw`` overriding."""
    series = dict(alert_id=f"a{i}", district="huangpu", rule="flood_level", started_at=1_750_000_000.0,
                  updated_at=1_750_000_000.0 + i, value=4.2 + i, message=f"level high #{i}")
    return event(f"wl-{i}", **{**series, **kw})


def hook_settings(url: str, **kw) -> WebhookSettings:
    return WebhookSettings(url=url, secret=SECRET, timeout_s=2, backoff_initial_s=0.01, backoff_max_s=0.05, **kw)
