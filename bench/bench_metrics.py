"""What the Prometheus metrics cost per reading, beside the per-reading work they sit next to.

The gateway counts once per batch (``ingest.metrics.observe_batch``: one
latency observation per MQTT message, one counter increment per kind and
per dead-letter reason) and the worker once per detector batch
(``streams.metrics.observe_readings``: two histogram observations per
reading). Printed per reading, in microseconds, for batches of
``--batch`` readings, beside two baselines measured in the same run:
decoding a reading's Kafka record (``Reading.from_json``, which the worker
does for every reading) and encoding it (the gateway's ``json.dumps``).
Figures only: nothing here asserts timings.

    .venv/bin/python bench/bench_metrics.py [--n 200000] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cityeye.contracts import DeadLetter, Reading, mqtt_topic, to_json  # noqa: E402
from ingest.bridge import Inbound  # noqa: E402
from ingest.metrics import observe_batch  # noqa: E402
from streams.metrics import observe_readings  # noqa: E402


def readings(n: int, now: float) -> list[Reading]:
    kinds = ("water_level", "traffic", "weather")
    return [Reading(f"s-{i % 1000}", kinds[i % 3], "huangpu", now - 30, {"level_m": 3.0 + i % 7 / 10}, now - 0.05,
                    mqtt_topic("huangpu", kinds[i % 3], f"s-{i % 1000}")) for i in range(n)]


def per_reading_us(n: int, run) -> float:
    t0 = time.perf_counter()
    run()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    now = time.time()
    batch = readings(args.batch, now)
    outcomes: list[Reading | DeadLetter] = [*batch[:-5], *(DeadLetter.of(b"{", "t", "invalid_json: x", now)
                                                         for _ in range(5))]
    messages = [Inbound(r.mqtt_topic, b"", i, 1, 0, now - 0.01) for i, r in enumerate(batch)]
    records = [to_json(r) for r in batch]
    rounds = max(1, args.n // args.batch)
    n = rounds * args.batch

    def gateway() -> None:
        for _ in range(rounds):
            observe_batch(messages, outcomes, now, 0)

    def worker() -> None:
        for _ in range(rounds):
            observe_readings(batch, now - 0.01, now)

    def decode() -> None:
        for _ in range(rounds):
            for raw in records:
                Reading.from_json(raw)

    def encode() -> None:
        for _ in range(rounds):
            for r in batch:
                json.dumps(r.__dict__, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    figures = {name: per_reading_us(n, run) for name, run in
               (("gateway metrics (observe_batch)", gateway), ("worker metrics (observe_readings)", worker),
                ("baseline: Reading.from_json", decode), ("baseline: gateway json encode", encode))}
    print(f"{n:,} readings in batches of {args.batch} (one MQTT message per reading)")
    for name, us in figures.items():
        print(f"  {name:36s} {us:7.2f} µs/reading")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
