"""streams.alert_sender.AlertSender against a real (Tansu) broker: a burst of events goes out at once, each once."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from cityeye.contracts import TOPIC_ALERTS, AlertEvent
from streams.alert_sender import AlertSender
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.timeout(90)

#: the broker's pause while the burst is sent: every produce request waits this long
PAUSE_S = 1.5


def _event(i: int) -> AlertEvent:
    return AlertEvent(alert_id=f"alert-{i:04d}", sensor_id=f"wl-{i:04d}", kind="water_level", district="d00",
                      rule="water_level.flatline", severity="blue", state="firing", value=3.0, threshold=60.0,
                      message="level stuck at 3.00 m for 60 readings (12 s)", started_at=1e9, updated_at=1e9 + i,
                      labels={"rules_version": "0123456789ab"})


def test_a_burst_of_events_is_produced_in_one_request_not_one_round_trip_per_16_kib(kafka):
    """600 events (~270 KB, ~70 KB a partition) are stamped when sent, not a broker round trip per 16 KiB batch
    (aiokafka's default batch size: its appends then waited for each full batch to drain)."""
    events = [_event(i) for i in range(600)]

    async def scenario():
        sender = AlertSender(kafka.settings)
        await sender.send([_event(9999)])  # started, metadata known
        os.kill(kafka.proc.pid, signal.SIGSTOP)  # a busy broker: every round trip takes PAUSE_S
        try:
            sending = asyncio.create_task(sender.send(events))
            await asyncio.sleep(PAUSE_S)
        finally:
            os.kill(kafka.proc.pid, signal.SIGCONT)
        await asyncio.wait_for(sending, 30)
        await sender.close()

    asyncio.run(scenario())
    records = [r for r in asyncio.run(read_topic(kafka.settings, TOPIC_ALERTS, 601)) if r.key != b"alert-9999"]
    assert sorted(r.key.decode() for r in records) == [e.alert_id for e in events]  # each event once
    stamped = [r.timestamp / 1000 for r in records]
    assert max(stamped) - min(stamped) < PAUSE_S / 3, "the burst waited for the broker between its events"
