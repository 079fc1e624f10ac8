"""The Faust detector worker against a real (Tansu) Kafka broker.

Readings go in on ``readings.<kind>``; alert events are read back from
``alerts.events`` and compared with what the pure engine computes from the
same readings (the worker must add nothing, lose nothing and keep alert ids
across restarts).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from cityeye.config import KafkaSettings, Settings
from cityeye.contracts import (
    TOPIC_ALERTS,
    TOPIC_DEADLETTER,
    TOPIC_PARTITIONS,
    AlertEvent,
    DeadLetter,
    Reading,
    all_topics,
    readings_topic,
    to_json,
)
from cityeye.kafka import make_consumer, make_producer
from cityeye.sensor_registry import load_registry
from ingest.aggregation import build_records
from simulators import DEMO_REGISTRY
from launch.servers import free_port
from streams.app import faust_settings
from streams.command import StreamsWorker, run_worker
from streams.gc_tuning import WORKER_GC_THRESHOLDS
from streams.sensor_engine import SensorEngine, default_checks_factory
from streams.replay import committed_offsets
from tests.kafka_helpers import committed_total, wait_until

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parent.parent
WL = "wl-huangpu-01"  # warning_m 4.50, guaranteed_m 5.20
WX = "wx-huangpu-01"
T0 = 1_800_000_000.0


def water(level: float, i: int) -> Reading:
    t = T0 + 60.0 * i
    return Reading(WL, "water_level", "huangpu", t, {"level_m": level}, t, f"cityeye/huangpu/water_level/{WL}")


def weather(rain_mm: float, i: int) -> Reading:
    t = T0 + 600.0 * i
    return Reading(WX, "weather", "huangpu", t, {"rain_mm": rain_mm, "temp_c": 26.0, "wind_ms": 3.0}, t,
                   f"cityeye/huangpu/weather/{WX}")


def water_series(levels: list[float], start: int = 0) -> list[Reading]:
    return [water(lvl, start + i) for i, lvl in enumerate(levels)]


def expected_events(readings: list[Reading]) -> list[AlertEvent]:
    """What the pure engine emits for these readings (the worker must match it)."""
    engine = SensorEngine(load_registry(DEMO_REGISTRY))
    return [e for r in readings for e in engine.process(r)]


async def produce(settings: Settings, readings: list[Reading], raw: list[tuple[str, bytes, bytes]] = (),
                  aggregate: int = 1) -> dict[str, int]:
    """Send ``readings`` as single records keyed by sensor (``aggregate=1``, an old gateway's format)
    or as the gateway's aggregated records of up to ``aggregate`` readings; returns records sent per kind."""
    producer = make_producer(settings.kafka, "test-feed")
    await producer.start()
    sent: dict[str, int] = {}
    try:
        if aggregate == 1:
            for r in readings:
                await producer.send(readings_topic(r.kind), to_json(r), key=r.sensor_id.encode())
                sent[r.kind] = sent.get(r.kind, 0) + 1
        else:
            for rec in build_records(readings, all_topics().__getitem__, max_readings=aggregate, max_bytes=1 << 18):
                await producer.send(rec.topic, rec.value, key=rec.key, partition=rec.partition, headers=rec.headers)
                kind = rec.topic.removeprefix("readings.")
                sent[kind] = sent.get(kind, 0) + 1
        for topic, key, value in raw:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def read_topic(settings: Settings, topic: str, until, timeout: float = 30.0) -> list[bytes]:
    """All values of ``topic`` from the start, once ``until(values)`` holds (or at the timeout)."""
    consumer = make_consumer(settings.kafka, topic, group=None)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(values):
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                values += [m.value for m in msgs]
    finally:
        await consumer.stop()
    return values


async def alerts(settings: Settings, until, timeout: float = 30.0) -> list[AlertEvent]:
    raw = await read_topic(settings, TOPIC_ALERTS, lambda vs: until([AlertEvent.from_json(v) for v in vs]), timeout)
    return [AlertEvent.from_json(v) for v in raw]


def has(n: int):
    return lambda events: len(events) >= n


def summary(events: list[AlertEvent]) -> list[tuple]:
    return [(e.sensor_id, e.rule, e.state, e.severity, e.value, e.alert_id, e.event_id) for e in events]


async def test_water_level_and_rainstorm_alerts_and_dead_letters(settings):
    levels = [4.0] * 3 + [4.6] * 4 + [5.3] * 4 + [4.9] * 4 + [4.0] * 4
    wl = water_series(levels)
    wx = [weather(r, i) for i, r in enumerate([0.0] * 3 + [6.0] * 10 + [0.0] * 80)]
    garbage = [(readings_topic("weather"), b"wx-bad", b"{not json"),
               (readings_topic("water_level"), WL.encode(), b'{"sensor_id": "wl-huangpu-01"}')]
    async with StreamsWorker(settings) as worker:
        await produce(settings, wl + wx, garbage)
        want_wl = [e for e in expected_events(wl) if e.rule == "water_level.warning"]
        want_wx = [e for e in expected_events(wx) if e.rule == "weather.rainstorm"]
        got = await alerts(settings, has(len(want_wl) + len(want_wx)))
        dead = [DeadLetter.from_json(v) for v in await read_topic(settings, TOPIC_DEADLETTER, has(2))]
        # the trailing dry readings raise nothing: wait for the worker to have counted them
        await wait_until(lambda: worker.streams.runtime.readings >= len(wl) + len(wx))
        assert worker.streams.runtime.readings == len(wl) + len(wx)

    got_wl = [e for e in got if e.rule == "water_level.warning"]
    assert [(e.state, e.severity) for e in got_wl] == [
        ("firing", "yellow"), ("firing", "orange"), ("firing", "yellow"), ("resolved", "yellow")]
    assert got_wl[0].value == 4.6 and got_wl[0].threshold == 4.5
    assert got_wl[1].value == 5.3 and got_wl[1].threshold == 5.2
    assert len({e.alert_id for e in got_wl}) == 1
    assert summary(got_wl) == summary(want_wl)

    got_wx = [e for e in got if e.rule == "weather.rainstorm"]
    assert [(e.state, e.severity) for e in got_wx] == [
        ("firing", "orange"), ("firing", "yellow"), ("firing", "blue"), ("resolved", "blue")]
    assert got_wx[0].value == 54.0 and got_wx[0].threshold == 50.0
    assert summary(got_wx) == summary(want_wx)

    by_payload = {d.payload: d for d in dead}
    assert len(dead) == 2
    assert "not a JSON reading" in by_payload["{not json"].reason
    assert "lacks field 'kind'" in by_payload['{"sensor_id": "wl-huangpu-01"}'].reason
    assert by_payload['{"sensor_id": "wl-huangpu-01"}'].sensor_id == WL


@pytest.mark.parametrize("aggregate", [1, 4], ids=["single-records", "aggregated-records"])
async def test_restart_restores_state_and_keeps_alert_ids(kafka, settings, aggregate):
    # snapshots only on transitions and shutdown: the graceful stop must carry the state over
    settings = settings.model_copy(update={"snapshot_every": 10_000})
    first = water_series([4.0] * 3 + [4.6] * 4 + [4.62])  # yellow fires; min-duration timer running
    second = water_series([4.62, 5.3, 5.3, 5.3, 5.3, 4.0, 4.0, 4.0, 4.0], start=len(first))
    # across the restart, 4.62 pairs with 4.62: a fresh detector would restart its pending clock
    want = [e for e in expected_events(first + second) if e.rule == "water_level.warning"]

    stop = asyncio.Event()
    first_worker = asyncio.create_task(run_worker(settings, stop))  # the embedded runner's way
    await produce(settings, first, aggregate=aggregate)
    before = await alerts(settings, has(1))
    stop.set()
    await asyncio.wait_for(first_worker, 30)  # returns once stopped: state snapshotted, group left
    assert [(e.state, e.severity) for e in before] == [("firing", "yellow")]

    async with StreamsWorker(settings) as worker:
        assert worker.streams.runtime.engine.state(WL) is not None  # restored on assignment, before any reading
        await produce(settings, second, aggregate=aggregate)
        got = await alerts(settings, has(len(want)))
    warning = [e for e in got if e.rule == "water_level.warning"]
    assert summary(warning) == summary(want)
    assert [(e.state, e.severity) for e in warning] == [
        ("firing", "yellow"), ("firing", "orange"), ("resolved", "orange")]
    assert len({e.alert_id for e in warning}) == 1


def _worker_proc(config: Path, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "launch.cli", "worker", "--config", str(config), "--loglevel", "warning", *args],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def wait_committed(settings: Settings, kind: str, count: int, timeout: float = 30.0) -> None:
    """Until the worker group's committed offsets on ``readings.<kind>`` add up to ``count``."""
    async def committed() -> bool:
        return await committed_total(settings.kafka, readings_topic(kind)) >= count

    assert await wait_until(committed, timeout, every=0.2), f"worker did not commit {count} offsets on {kind}"


@pytest.mark.parametrize("aggregate", [1, 3], ids=["single-records", "aggregated-records"])
async def test_kill_9_keeps_episodes_and_replays_what_snapshots_missed(kafka, settings, tmp_path, aggregate):
    """A crashed worker's successor continues ongoing episodes under the same alert ids, and
    re-reads the readings between the last snapshots and the committed offsets."""
    config = tmp_path / "cityeye.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": kafka.bootstrap, "profile": "tansu",
                  "consumer_group_prefix": settings.kafka.consumer_group_prefix},
        "influx": {"enabled": False}, "registry": str(DEMO_REGISTRY), "snapshot_every": 10_000,
    }))
    log = tmp_path / "worker.log"
    first = water_series([4.0] * 3 + [4.6] * 4)
    second = water_series([5.3] * 4 + [4.0] * 4, start=len(first))
    # 5 x 8 mm: 40 mm, no alert yet, and only the first reading is in a snapshot (snapshot_every is huge)
    rain_before = [weather(8.0, i) for i in range(5)]
    rain_after = [weather(8.0, i) for i in range(5, 7)]  # 56 mm in 1 h: orange, if the 40 mm survived the crash
    want = [e for e in expected_events(first + second + rain_before + rain_after)
            if e.rule in ("water_level.warning", "weather.rainstorm")]
    assert [(e.rule, e.severity) for e in want if e.rule == "weather.rainstorm"] == [("weather.rainstorm", "orange")]

    proc = _worker_proc(config, log)
    try:
        sent = await produce(settings, first + rain_before[:1], aggregate=aggregate)
        await wait_committed(settings, "weather", 1)  # the sensor's first snapshot is taken with its first batch
        more = await produce(settings, rain_before[1:], aggregate=aggregate)
        before = await alerts(settings, has(1), timeout=60)
        assert [(e.state, e.severity) for e in before] == [("firing", "yellow")], log.read_text()[-3000:]
        await wait_committed(settings, "weather", sent["weather"] + more["weather"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc = _worker_proc(config, log)
        await produce(settings, second + rain_after, aggregate=aggregate)
        got = await alerts(settings, lambda evs: any(e.state == "resolved" for e in evs)
                           and any(e.rule == "weather.rainstorm" for e in evs), timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    relevant = [e for e in got if e.rule in ("water_level.warning", "weather.rainstorm")]
    # at-least-once: a replayed reading may repeat an event, but only as the very same event
    distinct = sorted({e.event_id: e for e in relevant}.values(), key=lambda e: (e.rule, e.updated_at))
    assert summary(distinct) == summary(sorted(want, key=lambda e: (e.rule, e.updated_at))), log.read_text()[-3000:]
    warning = [e for e in distinct if e.rule == "water_level.warning"]
    assert [(e.state, e.severity) for e in warning] == [("firing", "yellow"), ("firing", "orange"), ("resolved", "orange")]
    assert len({e.alert_id for e in warning}) == 1


async def test_stale_sensor_fires_on_the_clock_and_resolves_on_data(settings):
    """The timer ticks in stream time (latest reading + wall time since), so a 0.2 s sensor goes stale in ~1 s."""
    registry = load_registry(DEMO_REGISTRY)
    fast = registry.get(WL).model_copy(update={"interval_s": 0.2})
    registry.sensors[WL] = fast
    async with StreamsWorker(settings, registry=registry, tick_interval_s=0.1):
        await produce(settings, [water(3.0, 0)])
        stale = await alerts(settings, has(1))
        await produce(settings, [water(3.0, 1)])  # one minute later in stream time: back
        both = await alerts(settings, has(2))
    assert [(e.rule, e.state, e.severity) for e in both] == [
        ("water_level.stale", "firing", "yellow"), ("water_level.stale", "resolved", "yellow")]
    assert stale[0].started_at == pytest.approx(T0 + 1.0)  # last seen + 5 intervals, whatever the tick phase
    assert both[1].alert_id == stale[0].alert_id and both[1].updated_at == T0 + 60.0


def test_faust_settings_follow_the_broker_profile(settings):
    tansu = faust_settings(settings)
    assert (tansu["broker_session_timeout"], tansu["broker_heartbeat_interval"], tansu["fetch_max_wait_ms"]) == (2.0, 0.5, 100)
    # Tansu's ListOffsets counts batches: the recovery's end offsets come from Fetch, so batches may hold many records
    assert tansu["fetch_end_offsets"] == settings.kafka and tansu["producer_max_batch_size"] >= 256 * 1024
    assert tansu["web_enabled"] is False and tansu["store"] == "memory://" and tansu["topic_partitions"] == 4
    kafka = faust_settings(settings.model_copy(update={"kafka": KafkaSettings(profile="kafka")}))
    assert kafka["fetch_end_offsets"] is None and kafka["broker_session_timeout"] == 10.0
    assert kafka["id"] == "cityeye-streams" and kafka["broker"] == "kafka://127.0.0.1:9092"


async def test_fetch_wait_reaches_the_consumer_and_web_binds_loopback(settings):
    port = free_port()
    async with StreamsWorker(settings, web_port=port) as worker:
        await worker.wait_ready()
        fetcher = worker.app.consumer._thread._consumer._fetcher
        assert fetcher._fetch_max_wait_ms == settings.kafka.fetch_max_wait_ms == 100
        status = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status)
        assert status == 200


async def test_only_a_dedicated_worker_process_tunes_the_garbage_collector(settings):
    host = (1_234, 11, 12)  # the host's own settings, below the worker's
    before = gc.get_threshold()
    gc.set_threshold(*host)
    try:
        frozen = gc.get_freeze_count()
        async with StreamsWorker(settings):  # in-process (tests, backtests, the embedded runner's hosts)
            assert gc.get_threshold() == host and gc.get_freeze_count() == frozen
        async with StreamsWorker(settings, dedicated_process=True):  # `cityeye worker`
            assert gc.get_threshold() == WORKER_GC_THRESHOLDS and gc.get_freeze_count() > frozen
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_worker_command_reports_bad_config(tmp_path, caplog):
    from streams import command

    bad = tmp_path / "bad.yaml"
    bad.write_text("snapshot_every: 0\n")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["--config", str(bad)])) == 2
    assert "snapshot_every" in caplog.text and str(bad) in caplog.text


async def test_second_worker_takes_over_partitions_with_their_state(kafka, settings, tmp_path):
    """A rebalance moves sensors between workers: the revoking one snapshots, the new owner restores."""
    sensors = [f"wl-rb-{i:02d}" for i in range(8)]
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(yaml.safe_dump({"sensors": [
        {"id": s, "kind": "water_level", "district": "huangpu", "lat": 31.2, "lon": 121.5, "interval_s": 60,
         "levels": {"warning_m": 4.5, "guaranteed_m": 5.2}} for s in sensors]}))
    settings = settings.model_copy(update={"registry": str(registry_file), "snapshot_every": 10_000})
    config = tmp_path / "cityeye.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": kafka.bootstrap, "profile": "tansu",
                  "consumer_group_prefix": settings.kafka.consumer_group_prefix},
        "influx": {"enabled": False}, "registry": str(registry_file), "snapshot_every": 10_000,
    }))

    def series(levels: list[float], start: int) -> list[Reading]:
        return [Reading(s, "water_level", "huangpu", T0 + 60.0 * (start + i), {"level_m": lvl}, 0.0, "")
                for i, lvl in enumerate(levels) for s in sensors]

    first, second = series([4.0] * 3 + [4.6] * 4, 0), series([5.3] * 4 + [4.0] * 4, 7)
    engine = SensorEngine(load_registry(registry_file))
    want = [e for r in first + second for e in engine.process(r) if e.rule == "water_level.warning"]
    assert len(want) == 3 * len(sensors)

    async with StreamsWorker(settings) as worker:
        await produce(settings, first)
        await alerts(settings, has(len(sensors)))
        proc = _worker_proc(config, tmp_path / "worker2.log")
        try:
            deadline = time.monotonic() + 60
            while len(worker.streams.runtime.sensors_by_tp) in (0, 4):  # until the split (3 topics x 4 partitions)
                assert time.monotonic() < deadline, "no rebalance"
                await asyncio.sleep(0.2)
            assert 0 < len(worker.streams.runtime.tp_of) < len(sensors)
            await produce(settings, second)
            # wait for the warning events themselves: the rate-of-rise and forecast events count for nothing here
            got = await alerts(settings, lambda evs: len({e.event_id for e in evs if e.rule == "water_level.warning"})
                               >= len(want), timeout=60)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    distinct = {e.event_id: e for e in got if e.rule == "water_level.warning"}
    key = lambda e: (e.sensor_id, e.updated_at)  # noqa: E731
    assert summary(sorted(distinct.values(), key=key)) == summary(sorted(want, key=key)), \
        (tmp_path / "worker2.log").read_text()[-3000:]


async def test_a_failing_sensor_is_dead_lettered_and_the_others_go_on(settings):
    def factory(sensor):
        if sensor.id == "wl-minhang-01":
            raise RuntimeError("no checks for this one")
        return default_checks_factory(sensor)

    broken = Reading("wl-minhang-01", "water_level", "minhang", T0, {"level_m": 3.0}, T0, "cityeye/minhang/water_level/wl-minhang-01")
    wl = water_series([4.0] * 3 + [4.6] * 3)
    async with StreamsWorker(settings, checks_factory=factory) as worker:
        await produce(settings, [broken] + wl)
        got = await alerts(settings, has(1))
        dead = [DeadLetter.from_json(v) for v in await read_topic(settings, TOPIC_DEADLETTER, has(1))]
        assert worker.streams.runtime.readings == len(wl)
    assert [(e.sensor_id, e.state, e.severity) for e in got] == [(WL, "firing", "yellow")]
    assert len(dead) == 1 and dead[0].sensor_id == "wl-minhang-01"
    assert "processing failed: RuntimeError: no checks for this one" in dead[0].reason
    assert dead[0].mqtt_topic == "cityeye/minhang/water_level/wl-minhang-01"


def test_worker_command_reports_an_unreachable_broker(tmp_path, caplog):
    from streams import command

    config = tmp_path / "cityeye.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap": f"127.0.0.1:{free_port()}"}, "influx": {"enabled": False}}))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["--config", str(config), "--startup-timeout", "1"])) == 1
    assert "cannot create the topics on Kafka at 127.0.0.1:" in caplog.text


async def test_a_standby_worker_connects_only_when_told(kafka, settings, tmp_path):
    """``cityeye worker --standby FILE``: built, it writes FILE and waits; SIGUSR1 starts it, SIGTERM before
    that stops it without ever joining the group; a commit request (SIGUSR2) kills neither."""
    config = tmp_path / "cityeye.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap": kafka.bootstrap, "profile": "tansu",
                  "consumer_group_prefix": settings.kafka.consumer_group_prefix},
        "influx": {"enabled": False}, "registry": str(DEMO_REGISTRY)}))
    group = f"{settings.kafka.consumer_group_prefix}-streams"
    await produce(settings, water_series([4.0] * 3))

    def standby(name: str) -> tuple[subprocess.Popen, Path, Path]:
        ready, log = tmp_path / f"{name}.ready", tmp_path / f"{name}.log"
        proc = _worker_proc(config, log, "--standby", str(ready))
        return proc, ready, log

    async def until_ready(proc: subprocess.Popen, ready: Path, log: Path) -> None:
        await wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text(errors="replace")

    # both standbys are built at once (a process start is most of this test's time); neither connects yet
    (stopped, stopped_ready, stopped_log), (started, ready, log) = standby("stopped"), standby("started")
    try:
        await until_ready(stopped, stopped_ready, stopped_log)
        stopped.send_signal(signal.SIGUSR2)
        stopped.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(stopped.wait, 30) == 0, stopped_log.read_text(errors="replace")
        assert "standby: starting" not in stopped_log.read_text(errors="replace")
        tps = [(readings_topic("water_level"), p) for p in range(TOPIC_PARTITIONS[readings_topic("water_level")])]
        assert await committed_offsets(settings.kafka, group, tps) == {}, "a stopped standby never reads"

        await until_ready(started, ready, log)
        started.send_signal(signal.SIGUSR2)  # ignored while on standby
        started.send_signal(signal.SIGUSR1)
        await wait_committed(settings, "water_level", 1)
        started.send_signal(signal.SIGUSR2)  # running: commit now
        assert started.poll() is None, log.read_text(errors="replace")
        started.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(started.wait, 30) == 0, log.read_text(errors="replace")
    finally:
        for proc in (stopped, started):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
