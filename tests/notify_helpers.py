"""Test helpers for the notifiers: sample alert snapshots and notifications.

The fake HTTP receiver they are sent to is ``tests.alerting_helpers.Receiver``.
"""

from __future__ import annotations

from alerts.notification import AlertSnapshot, Notification

__all__ = ["sample_alert", "sample_notification"]


def sample_alert(i: int = 1, **kw) -> AlertSnapshot:
    base = dict(alert_id=f"alert-{i}", sensor_id=f"wl-{i}", kind="water_level", district="huangpu",
                rule="flood_level", severity="orange", state="firing", started_at=1_750_000_000.0,
                updated_at=1_750_000_060.0, value=4.2, threshold=4.0, message="水位超过警戒水位 <4.0 m> & rising",
                sensor_name="外滩水位站", lat=31.2397, lon=121.4905)
    base.update(kw)
    return AlertSnapshot(**base)


def sample_notification(version: int = 1, status: str = "firing", previous_ids=None, alerts=None,
                        created_at: float = 1_750_000_061.0, receiver: str = "ops") -> Notification:
    return Notification(receiver=receiver, group_key="district=huangpu", group_labels={"district": "huangpu"},
                        version=version, status=status, reason="new" if version == 1 else "update",
                        alerts=alerts if alerts is not None else [sample_alert(1)], created_at=created_at,
                        summary="黄浦 flood warning", previous_ids=list(previous_ids or []))
