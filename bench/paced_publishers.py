"""Paced publishers of water-level gauges, for the latency and paced-gateway benches.

``publish_paced`` starts publisher processes (this file, run with
``--child-publisher``) that together publish ``rate`` readings/s for
``seconds`` over ``sensors`` water-level gauges, one reading per MQTT QoS 1
message, each stamped with the wall time it is built at (its ``ts``), through
:class:`mqtt_backlog.WindowedPublisher` (at most :data:`WINDOW` messages
unacknowledged: a slow machine shows as a lower achieved rate, not as
readings queued in the publisher). Every :data:`CROSSING`-th gauge crosses
its warning level (:data:`WARNING_M`) for :data:`HALF_PERIOD_S` seconds out
of two; the others stay below it. ``write_registry`` writes the gauges'
registry. Used by ``bench_latency.py`` and ``bench_gateway_paced.py``.

    write_registry(tmp / "registry.yaml", 1000)
    reports = await publish_paced(port, 1000, 5000.0, 60.0)   # [{"published", "seconds", "cpu"}, ...]
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
import uuid
from pathlib import Path

import yaml

from cityeye.contracts import format_ts, mqtt_topic
from mqtt_backlog import WindowedPublisher  # bench/, this script's directory

__all__ = ["CROSSING", "HALF_PERIOD_S", "INTERVAL_S", "RATE_PER_PUBLISHER", "STALE_AFTER_S", "WARNING_M",
           "publish_paced", "publishers_for", "write_registry"]

WARNING_M = 4.5
#: every CROSSING-th gauge crosses its warning level, for HALF_PERIOD_S seconds out of two
CROSSING, HALF_PERIOD_S = 20, 10.0
#: readings/s one publisher process is given at most (a lean publisher: ~10 % of a core at 5 k/s)
RATE_PER_PUBLISHER = 10_000.0
#: a publisher's most unacknowledged messages
WINDOW = 1000
#: each gauge's registered interval: the default stale rule fires after 5 of them without a reading
INTERVAL_S = 1.0
STALE_AFTER_S = 5 * INTERVAL_S


def publishers_for(rate: float) -> int:
    """How many publisher processes share ``rate`` readings/s."""
    return max(1, math.ceil(rate / RATE_PER_PUBLISHER))


def _gauges(n: int) -> list[tuple[str, str]]:
    return [(f"d{i % 16:02d}", f"wl-lat-{i:04d}") for i in range(n)]


def _level(i: int, now: float) -> float:
    if i % CROSSING == 0 and int(now / HALF_PERIOD_S) % 2 == 1:
        return 4.7
    return 3.0 + 0.001 * (i % 100)


# -- a publisher process -----------------------------------------------------------------------

def _publish(port: int, sensors: int, rate: float, seconds: float, index: int, count: int) -> None:
    """Publish ``rate`` readings/s round-robin over every ``count``-th gauge from ``index`` for
    ``seconds``, paced against the wall clock from the first reading; print what was sent.

    Every 2 ms the readings due are built, each stamped with the wall time as it is built, and
    written with one socket write (:class:`mqtt_backlog.WindowedPublisher`: a paho publisher's
    per-message callbacks and locks cost more CPU than the rest of a reading's path)."""
    gauges = _gauges(sensors)
    mine = list(range(index, sensors, count))
    topics = {i: mqtt_topic(gauges[i][0], "water_level", gauges[i][1]) for i in mine}
    sent, start = 0, time.time()
    with WindowedPublisher(port, client_id=f"bench-pub-{index}-{uuid.uuid4().hex[:6]}", window=WINDOW,
                           timeout=60.0) as pub:
        while True:
            now = time.time()
            if now - start >= seconds:
                break
            pub.poll_acks()
            # never more than the in-flight window ahead of the broker: a reading is stamped when it can go out
            todo = min(int((now - start) * rate) - sent, WINDOW - pub.unacknowledged)
            if todo > 0:
                chunk = []
                for _ in range(todo):
                    i = mine[sent % len(mine)]
                    ts = time.time()
                    body = {"ts": format_ts(ts), "values": {"level_m": _level(i, ts)}}
                    chunk.append((topics[i], json.dumps(body).encode()))
                    sent += 1
                pub.send(chunk)
            time.sleep(0.002)
        elapsed = time.time() - start
        pub.flush()
    print(json.dumps({"published": sent, "seconds": elapsed, "cpu": time.process_time()}), flush=True)


def write_registry(path: Path, sensors: int) -> Path:
    """The registry of the ``sensors`` gauges the publishers write for (:func:`publish_paced`), at ``path``."""
    path.write_text(yaml.safe_dump({"sensors": [
        {"id": sid, "kind": "water_level", "district": d, "lat": 31.2, "lon": 121.5, "interval_s": INTERVAL_S,
         "levels": {"warning_m": WARNING_M, "guaranteed_m": 5.2, "historical_max_m": 5.86}}
        for d, sid in _gauges(sensors)]}, sort_keys=False))
    return path


async def publish_paced(port: int, sensors: int, rate: float, seconds: float, publishers: int = 0) -> list[dict]:
    """Publish ``rate`` readings/s for ``seconds`` over ``sensors`` gauges from ``publishers`` processes
    (0: one per ``RATE_PER_PUBLISHER``), each a lean paced publisher; their reports once they end."""
    count = publishers or publishers_for(rate)
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child-publisher", str(port), str(sensors),
        str(rate / count), str(seconds), str(index), str(count), stdout=asyncio.subprocess.PIPE)
        for index in range(count)]
    outs = [await p.communicate() for p in procs]
    return [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]


def _main() -> None:
    if len(sys.argv) != 8 or sys.argv[1] != "--child-publisher":
        raise SystemExit("usage: paced_publishers.py --child-publisher PORT SENSORS RATE SECONDS INDEX COUNT")
    port, sensors, rate, seconds, index, count = sys.argv[2:]
    _publish(int(port), int(sensors), float(rate), float(seconds), int(index), int(count))


if __name__ == "__main__":
    _main()
