"""streams.alert_sender.AlertSender: against a real (Tansu) broker a burst of events goes out at once, each once;
without one, its events' bytes and its log lines."""

from __future__ import annotations

import asyncio
import logging
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


def test_an_events_json_is_the_contracts_json_byte_for_byte():
    """event_json skips asdict's deep copy and writes the same bytes (None values, labels, non-ASCII, surrogates)."""
    from cityeye.contracts import to_json
    from streams.alert_sender import event_json

    odd = AlertEvent(alert_id="a-ü", sensor_id="wl-\ud800", kind="water_level", district="d00", rule="stale",
                     severity="yellow", state="resolved", value=None, threshold=None, message="水位 \"x\"\n",
                     started_at=1.5e9, updated_at=1.5e9 + 0.1, labels={})
    for ev in (_event(7), odd):
        assert event_json(ev) == to_json(ev)


def test_a_send_logs_one_line_and_each_event_only_at_debug(caplog):
    """600 events: one INFO line that counts them (fails with a line per event), each event at DEBUG."""
    from bench.bench_tick_burst import NullProducer

    sender = AlertSender(None)  # type: ignore[arg-type]
    sender._producer = producer = NullProducer()  # type: ignore[assignment]
    events = [_event(i) for i in range(600)]
    caplog.set_level(logging.INFO, logger="streams.alert_sender")
    asyncio.run(sender.send(events))
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == ["600 alert event(s) sent: firing 600; water_level.flatline 600"]
    assert len(producer.values) == 600

    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="streams.alert_sender")
    asyncio.run(sender.send(events[:3]))
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 3 and "wl-0001" in debug[1] and "alert-0001" in debug[1]
