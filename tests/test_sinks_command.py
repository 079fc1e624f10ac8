"""`cityeye sinks`: in-process run_sinks and the real subcommand in a child process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
import yaml

from alerts.sinks.command import run_sinks
from cityeye.contracts import TOPIC_ALERTS, to_json
from cityeye.errors import ConfigError
from tests.alerting_helpers import Receiver
from tests.kafka_helpers import produce, wait_until
from tests.sink_helpers import hook_settings, make_event, query


async def test_run_sinks_feeds_influx_and_the_webhook_together(settings, influx_settings, influx_server):
    async with Receiver() as rx:
        cfg = settings.model_copy(update={"influx": influx_settings, "webhook": hook_settings(rx.url())})
        stop = asyncio.Event()
        task = asyncio.create_task(run_sinks(cfg, stop))
        events = [make_event(i) for i in range(3)]
        await produce(cfg.kafka, TOPIC_ALERTS, [(e.alert_id.encode(), to_json(e)) for e in events])
        db = influx_settings.database
        ok = await wait_until(lambda: task.done() or (len(rx.requests) == 3 and len(
            query(influx_server.url, db, "SELECT * FROM alert_events")) == 3))
        stop.set()
        await asyncio.wait_for(task, 20)
    assert ok
    assert sorted(r.headers["Idempotency-Key"] for r in rx.requests) == sorted(e.event_id for e in events)


async def test_run_sinks_with_nothing_enabled_is_a_config_error(settings):
    with pytest.raises(ConfigError, match="no sink enabled"):
        await run_sinks(settings, asyncio.Event())


def test_cli_rejects_a_bad_config_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("influx:\n  api: v9\n")
    proc = subprocess.run([sys.executable, "-m", "launch.cli", "sinks", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "influx.api" in proc.stderr


async def test_cli_writes_events_and_stops_cleanly_on_sigterm(tmp_path, kafka, influx_settings, influx_server):
    path = tmp_path / "sinks.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": kafka.bootstrap, "profile": "tansu",
                  "consumer_group_prefix": kafka.settings.consumer_group_prefix},
        "influx": {"enabled": True, "api": "v1", "url": influx_server.url, "database": influx_settings.database,
                   "flush_interval_s": 0.2},
    }))
    proc = subprocess.Popen([sys.executable, "-m", "launch.cli", "sinks", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        await produce(kafka.settings, TOPIC_ALERTS, [(b"a1", to_json(make_event(1)))])
        ok = await wait_until(lambda: proc.poll() is not None or len(
            query(influx_server.url, influx_settings.database, "SELECT * FROM alert_events")) == 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ok, out
    assert proc.returncode == 0, out
