"""The stream clocks against a lagging worker (no Kafka): a backlog is not silence.

Two gauges of the demo registry (a reading a minute, stale after 5 min of no
data) share partition ``p0``; the wall clock is a list the test moves, and
the worker's part (streams/agents.py) is played by calling
``behind``/``caught_up`` the way its clock tick does, from the partition's
high watermark and next offset.
"""

from __future__ import annotations

import random

import pytest

from cityeye.contracts import Reading
from cityeye.sensor_registry import load_registry
from simulators import DEMO_REGISTRY
from streams.clocks import SensorClocks, StreamClock
from streams.sensor_engine import SensorEngine

A, B = "wl-huangpu-01", "wl-minhang-01"
T0 = 1_800_000_000.0
STALE_S = 300.0  # 5 intervals of 60 s


class Partition:
    """One partition's gauges, their engine and clocks, and a wall clock the test moves."""

    def __init__(self) -> None:
        self.wall = [0.0]
        self.clocks = SensorClocks(lambda: self.wall[0])
        self.registry = load_registry(DEMO_REGISTRY)
        self.engine = SensorEngine(self.registry)
        self.events: list = []

    def read(self, sid: str, minute: int) -> None:
        """The worker processes ``sid``'s reading of ``minute`` now."""
        s, t = self.registry.get(sid), T0 + 60.0 * minute
        self.events += self.engine.process(Reading(sid, s.kind, s.district, t, {"level_m": 3.0}, t, ""))
        self.clocks.observe("p0", sid, t)

    def tick(self, backlog: bool) -> None:
        """The clock tick: the partition is behind its high watermark (``backlog``) or caught up."""
        if backlog:
            self.clocks.behind("p0")
        else:
            self.clocks.caught_up("p0")
        for sid in (A, B):
            self.events += self.engine.tick(self.clocks.now(sid), [sid])

    def live_then_stalled(self, backlog: bool) -> None:
        """3 min live (both gauges, caught up), then 10 min of a stalled worker: behind if ``backlog``."""
        for minute in range(3):
            self.read(A, minute)
            self.read(B, minute)
            self.wall[0] += 60.0
            self.tick(backlog=False)
        for _ in range(10):
            self.wall[0] += 60.0
            self.tick(backlog=backlog)

    def stale(self) -> list[tuple[str, str, float]]:
        return [(e.sensor_id, e.state, e.started_at) for e in self.events if e.rule.endswith("stale")]


def test_a_stalled_worker_with_a_backlog_does_not_call_its_queued_sensors_stale():
    p = Partition()
    # the worker stalls for 10 min (sends, a restart, a rollover) while both gauges go on reporting:
    # their readings wait in Kafka, and each tick in the stall sees the partition behind
    p.live_then_stalled(backlog=True)
    assert p.clocks.now(A) == T0 + 120.0 + 60.0  # the last catch-up: no wall time past it counts
    # the backlog is released: ten minutes of readings processed in one second, then caught up
    p.wall[0] += 1.0
    for minute in range(3, 13):
        p.read(A, minute)
        p.read(B, minute)
        p.tick(backlog=minute < 12)
    assert p.stale() == []


def test_the_wall_clock_alone_would_have_called_them_stale():
    """The failure fixed: without being told of the backlog, the stall counts as silence."""
    p = Partition()
    p.live_then_stalled(backlog=False)
    assert [(sid, state) for sid, state, _ in p.stale()] == [(A, "firing"), (B, "firing")]


def test_a_sensor_silent_while_its_partition_reports_goes_stale_on_time_even_behind():
    """B stops at minute 2; A goes on. Behind or caught up, B is stale once A's data is 5 min past B's last."""
    for backlog in (False, True):
        p = Partition()
        for minute in range(12):
            p.read(A, minute)
            if minute <= 2:
                p.read(B, minute)
            p.wall[0] += 60.0
            p.tick(backlog=backlog)
        assert [(sid, state) for sid, state, _ in p.stale()] == [(B, "firing")], backlog
        assert p.stale()[0][2] == T0 + 120.0 + STALE_S  # last seen + 5 intervals


def test_a_whole_silent_partition_goes_stale_on_the_wall_clock():
    p = Partition()
    p.read(A, 0)
    p.read(B, 0)
    for _ in range(4):
        p.wall[0] += 60.0
        p.tick(backlog=False)
    assert p.stale() == []
    p.wall[0] += 61.0
    p.tick(backlog=False)
    assert [(sid, state, at) for sid, state, at in p.stale()] == [
        (A, "firing", T0 + STALE_S), (B, "firing", T0 + STALE_S)]


def test_a_partition_never_caught_up_counts_no_wall_time():
    """After a restart with a backlog the first tick sees it behind: only readings move the clock."""
    now = [100.0]
    clock = StreamClock(lambda: now[0])
    clock.observe(5000.0)
    clock.behind()
    now[0] = 400.0
    assert clock.now() == 5000.0
    clock.observe(5060.0)
    now[0] = 700.0
    assert clock.now() == 5060.0
    clock.caught_up()  # at 700: from now on the wall time counts again, from the latest reading's arrival
    now[0] = 730.0
    assert clock.now() == 5060.0 + 330.0


def test_a_records_readings_observed_at_once_move_the_clocks_as_the_plain_formula_does():
    """SensorClocks.observe_readings (the worker's, a record at a time) against the definition written
    with StreamClock alone: a sensor's time is its latest reading's plus its partition's pace since then,
    the pace clock taking each reading's progress since the sensor's first reading."""
    rng = random.Random(5)
    wall = [0.0]
    clocks = SensorClocks(lambda: wall[0])
    paces: dict[str, StreamClock] = {}
    first: dict[str, float] = {}
    seen: dict[str, tuple[str, float, float]] = {}
    for _ in range(300):
        wall[0] += rng.choice([0.0, 0.5, 30.0])
        partition = rng.choice(["p0", "p1"])
        record = [Reading(sid, "water_level", "d", T0 + rng.uniform(-600, 3600), {}, 0.0, "")
                  for sid in rng.choices(["a", "b", "c", "d"], k=rng.randint(1, 6))]  # out of order, repeats
        clocks.observe_readings(partition, record, wall[0])
        pace = paces.setdefault(partition, StreamClock(lambda: wall[0]))
        for r in record:
            start = first.setdefault(r.sensor_id, r.ts)
            pace.observe(r.ts - start, wall[0])
            prev = seen.get(r.sensor_id)
            if prev is None or prev[0] != partition or r.ts >= prev[1]:
                seen[r.sensor_id] = (partition, r.ts, pace.now(wall[0]))
        wall[0] += 1.0
        for sid, (part, last, mark) in seen.items():
            assert clocks.now(sid) == pytest.approx(last + paces[part].now() - mark, abs=1e-6), sid
