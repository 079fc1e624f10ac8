"""A worker builds each kind's checks once before its first reading (SensorEngine.warm_up)."""

from __future__ import annotations

import logging

from cityeye.config import KafkaSettings, Settings
from cityeye.sensor_registry import Sensor, SensorRegistry
from streams.command import StreamsWorker
from simulators import DEMO_REGISTRY
from streams.sensor_engine import SensorEngine, default_checks_factory


def _registry() -> SensorRegistry:
    sensors = [Sensor(id=f"{kind[:2]}-{i}", kind=kind, district="d0", lat=31.2, lon=121.5, interval_s=60,
                      levels={"warning_m": 4.5} if kind == "water_level" else {})
               for i in range(3) for kind in ("water_level", "traffic", "weather")]
    return SensorRegistry({s.id: s for s in sensors}, source="<test>")


def test_warm_up_builds_the_first_sensor_of_each_kind_once_and_keeps_no_state():
    built: list[str] = []

    def factory(sensor):
        built.append(sensor.id)
        return default_checks_factory(sensor)

    engine = SensorEngine(_registry(), factory)
    assert engine.warm_up() == ["water_level", "traffic", "weather"]
    assert built == ["wa-0", "tr-0", "we-0"]
    assert len(engine) == 0  # no sensor is held: its first reading builds its own checks


def test_a_kind_whose_checks_fail_to_build_is_logged_and_the_others_are_warmed(caplog):
    def factory(sensor):
        if sensor.kind == "traffic":
            raise RuntimeError("no traffic model")
        return default_checks_factory(sensor)

    with caplog.at_level(logging.ERROR, logger="streams.sensor_engine"):
        assert SensorEngine(_registry(), factory).warm_up() == ["water_level", "weather"]
    assert "warming up the traffic checks" in caplog.text


def test_only_a_dedicated_worker_process_warms_its_checks_when_built():
    # build() connects to nothing: no broker needed
    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:1", profile="tansu"), registry=str(DEMO_REGISTRY))
    for dedicated, expected in ((False, []), (True, ["wa-0", "tr-0", "we-0"])):
        built: list[str] = []

        def factory(sensor, built=built):
            built.append(sensor.id)
            return default_checks_factory(sensor)

        StreamsWorker(settings, dedicated_process=dedicated, registry=_registry(), checks_factory=factory).build()
        assert built == expected, dedicated
