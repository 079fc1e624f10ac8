"""The stream clocks against a starved or paused gateway (no Kafka): late intake is not silence.

The worker keeps up with Kafka (every tick finds the partition caught up),
but the gateway upstream is paused: nothing reaches Kafka, the devices' messages
queue at the broker. The gateway's intake progress records
(cityeye/intake_progress.py) bound the partition's clock at the time up to
which its intake was complete; here they are played by calling
``SensorClocks.intake`` the way the worker does when it reads one. Same
gauges and wall clock as tests/test_streams_clocks.py (a reading a minute,
stale after 5 min).
"""

from __future__ import annotations

import pytest

from cityeye.intake_progress import INTAKE_HEADER, IntakeProgress, is_intake_progress, probe_topic
from cityeye.reading_records import readings_of
from streams.clocks import INTAKE_SILENCE_S, StreamClock
from tests.test_streams_clocks import STALE_S, A, B, Partition, T0

GW = "gateway-1"


def live(p: Partition, minutes: range, sensors=(A, B), gateway: str | None = GW) -> None:
    """Each minute: the sensors' readings arrive, the gateway says its intake is complete up to now, a tick."""
    for minute in minutes:
        for sid in sensors:
            p.read(sid, minute)
        if gateway is not None:
            p.clocks.intake("p0", gateway, p.wall[0])
        p.wall[0] += 60.0
        p.tick(backlog=False)


def test_a_paused_gateway_does_not_make_its_sensors_stale():
    """Gateway paused 10 min (the devices go on publishing; the broker queues): the worker is caught up."""
    p = Partition()
    live(p, range(3))
    for _ in range(10):  # nothing arrives, not even the gateway's progress
        p.wall[0] += 60.0
        p.tick(backlog=False)
    assert p.stale() == []
    assert p.clocks.now(A) == T0 + 120.0  # aged up to the last intake progress (with its last reading), no further
    # resumed: the broker's backlog of 10 minutes goes through in a second, then its progress
    p.wall[0] += 1.0
    for minute in range(3, 13):
        p.read(A, minute)
        p.read(B, minute)
    p.clocks.intake("p0", GW, p.wall[0])
    live(p, range(13, 15))
    assert p.stale() == []


def test_without_intake_progress_the_pause_reads_as_silence():
    """The failure fixed: an old gateway (no progress records) pausing 10 min makes both gauges stale."""
    p = Partition()
    live(p, range(3), gateway=None)
    for _ in range(10):
        p.wall[0] += 60.0
        p.tick(backlog=False)
    assert [(sid, state) for sid, state, _ in p.stale()] == [(A, "firing"), (B, "firing")]


def test_a_silent_sensor_goes_stale_on_time_while_the_gateway_reports():
    p = Partition()
    live(p, range(3))
    live(p, range(3, 12), sensors=(A,))
    assert [(sid, state, at) for sid, state, at in p.stale()] == [(B, "firing", T0 + 120.0 + STALE_S)]


def test_a_whole_silent_city_goes_stale_while_its_gateway_is_healthy():
    """No device publishes, the gateway's probes keep coming back: the wall time counts."""
    p = Partition()
    live(p, range(1))
    for _ in range(6):
        p.clocks.intake("p0", GW, p.wall[0])
        p.wall[0] += 60.0
        p.tick(backlog=False)
    assert [(sid, state, at) for sid, state, at in p.stale()] == [
        (A, "firing", T0 + STALE_S), (B, "firing", T0 + STALE_S)]


def test_a_gateway_silent_too_long_no_longer_holds_the_clock():
    """A gateway gone for good: after INTAKE_SILENCE_S without its progress its sensors age on the wall clock."""
    p = Partition()
    p.clocks = type(p.clocks)(lambda: p.wall[0], intake_silence_s=600.0)
    live(p, range(3))
    for _ in range(9):  # 9 min after its last word: held
        p.wall[0] += 60.0
        p.tick(backlog=False)
    assert p.stale() == []
    p.wall[0] += 120.0  # past 10 min: no longer held, stale since its last reading + 5 min
    p.tick(backlog=False)
    assert [(sid, state, at) for sid, state, at in p.stale()] == [
        (A, "firing", T0 + 120.0 + STALE_S), (B, "firing", T0 + 120.0 + STALE_S)]
    assert INTAKE_SILENCE_S == 900.0  # the default: 15 min, longer than the usual 5-interval stale limits


def test_the_slowest_of_several_gateways_bounds_the_clock_and_time_never_goes_back():
    now = [1000.0]
    clock = StreamClock(lambda: now[0])
    clock.observe(5000.0)
    clock.intake("g1", 1000.0)
    now[0] = 1030.0
    clock.intake("g2", 1030.0)
    assert clock.now() == 5000.0  # g1 said nothing past 1000
    clock.intake("g1", 1020.0)
    assert clock.now() == 5020.0
    clock.intake("g3", 900.0)  # a gateway joining: it starts no lower than the bound in force
    clock.intake("g1", 1010.0)  # an older probe of g1 arriving late: intake only grows
    assert clock.now() == 5020.0
    now[0] = 1100.0
    for g in ("g1", "g2", "g3"):
        clock.intake(g, 1090.0)
    assert clock.now() == 5090.0


def test_the_first_progress_of_a_partition_does_not_set_its_clock_back():
    now = [1000.0]
    clock = StreamClock(lambda: now[0])
    clock.observe(5000.0)
    now[0] = 1050.0
    before = clock.now()
    clock.intake("g1", 1001.0)  # a probe sent 49 s ago (the gateway was busy), first heard now
    assert clock.now() == before == 5050.0


def test_progress_records_are_not_readings_and_bad_ones_are_ignored():
    good = IntakeProgress(GW, 1_800_000_000.5)
    headers = list(IntakeProgress.HEADERS)
    assert is_intake_progress(headers) and not is_intake_progress([("cityeye-agg", b"1")])
    assert IntakeProgress.from_record(good.to_json(), headers) == good
    assert readings_of(good.to_json(), None, headers) == []  # replay, backtest, read-back skip it
    for value in (None, b"", b"not json", b"[]", b'{"gateway": 1, "until": 2}', b'{"gateway": "g"}',
                  b'{"gateway": "g", "until": "x"}', b'{"gateway": "g", "until": true}', b"\xff\xfe"):
        assert IntakeProgress.from_record(value, headers) is None, value
    assert IntakeProgress.from_record(good.to_json(), [(INTAKE_HEADER, b"2")]) is None  # unknown version


@pytest.mark.parametrize("client_id", ["cityeye-gateway", "a/b+#", ""])
def test_the_probe_topic_is_one_plain_topic_outside_the_devices_namespace(client_id):
    topic = probe_topic(client_id)
    assert not topic.startswith("cityeye/") and topic.count("/") == 2 and not set("+#") & set(topic)


def test_intake_lag_per_gateway_is_the_worst_partition_and_a_gateway_gone_is_not_reported():
    from streams.clocks import SensorClocks
    from streams.metrics import INTAKE_LAG, report_intake_lags

    now = [1000.0]
    clocks = SensorClocks(lambda: now[0], intake_silence_s=600.0)
    for tp, gateway in (("p0", "g1"), ("p1", "g1"), ("p1", "g2")):
        clocks.intake(tp, gateway, now[0])  # a source first heard holds from then (the clock never goes back)
    now[0] = 1060.0
    clocks.intake("p0", "g1", 1050.0)
    clocks.intake("p1", "g1", 1030.0)
    clocks.intake("p1", "g2", 1059.0)
    assert clocks.intake_lags() == {"g1": 30.0, "g2": 1.0}
    reported = report_intake_lags(clocks.intake_lags(), set())
    assert INTAKE_LAG.labels("g1")._value.get() == 30.0
    now[0] = 1500.0
    clocks.intake("p0", "g1", 1499.0)
    clocks.intake("p1", "g1", 1499.0)
    assert clocks.intake_lags() == {"g1": 1.0, "g2": 441.0}  # g2 silent 7 min: its sensors wait
    now[0] = 1700.0  # g2 silent past the limit: it holds nothing, and is not reported
    assert set(clocks.intake_lags()) == {"g1"}
    reported = report_intake_lags(clocks.intake_lags(), reported)
    assert reported == {"g1"} and ("g2",) not in INTAKE_LAG._metrics
