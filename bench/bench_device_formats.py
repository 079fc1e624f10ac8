"""Decoding cost of the device formats beside the plain contract payload, same run, pure CPU.

Times the gateway's per-message path (``DeviceFormats.validate``: parse,
decode, validate) for the same water-level reading sent as

* the contract's own JSON (the baseline),
* a SenML pack in centimetres (``cityeye/<district>/senml/<sensor_id>``),
* the shipped ``acme-gauge`` mapping (centimetres, epoch seconds),
* the shipped ``meteo-station`` mapping (nested arrays, three pint units),

and the unit conversion alone: pint per value (``Quantity(v, "cm").to("m")``)
beside the affine factor :mod:`ingest.units` works out once. Prints
messages/s and microseconds per message; asserts nothing about time.
Run: ``.venv/bin/python bench/bench_device_formats.py --count 20000``.
"""

from __future__ import annotations

import argparse
import json
import time

from cityeye.contracts import format_ts
from cityeye.sensor_registry import load_registry
from ingest.formats import DeviceFormats
from ingest.mapping import SHIPPED_MAPPINGS, load_mapping
from ingest.units import _registry, converter
from simulators import DEMO_REGISTRY


def _rate(count: int, fn) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="messages per format (default: %(default)s)")
    args = parser.parse_args()
    formats = DeviceFormats(load_registry(DEMO_REGISTRY), [load_mapping(p) for p in SHIPPED_MAPPINGS])
    now = time.time()
    ts = round(now) - 60
    cases = {
        "contract JSON (baseline)": ("cityeye/huangpu/water_level/wl-huangpu-01",
                                     json.dumps({"ts": format_ts(ts), "values": {"level_m": 4.62}})),
        "SenML pack (cm)": ("cityeye/huangpu/senml/wl-huangpu-01",
                            json.dumps([{"bn": "wl-huangpu-01:", "bt": ts, "n": "level", "u": "cm", "v": 462}])),
        "mapping acme-gauge": ("acme/gauge/wl-huangpu-01/up", json.dumps({"t": ts, "lvl_cm": 462, "bat_mv": 3610})),
        "mapping meteo-station (1 obs)": ("meteo/ws9/obs", json.dumps({"station": "wx-pudong-01", "batch": [
            {"time": format_ts(ts), "sensors": [{"type": "rain", "value": 0.1}, {"type": "temp", "value": 77},
                                               {"type": "wind", "value": 10}]}]})),
    }
    baseline = None
    for name, (topic, text) in cases.items():
        payload = text.encode()
        [outcome] = formats.validate(payload, topic, now)
        assert not hasattr(outcome, "reason"), outcome.reason
        rate = _rate(args.count, lambda i: formats.validate(payload, topic, now))
        baseline = baseline or rate
        print(f"{name:32s}: {rate:10.0f} msg/s  {1e6 / rate:7.1f} us/msg  ({rate / baseline:.0%} of baseline)")
    ureg, affine = _registry(), converter("cm", "m")
    pint_rate = _rate(args.count, lambda i: ureg.Quantity(float(i), "cm").to("m").magnitude)
    affine_rate = _rate(args.count, lambda i: affine(float(i)))
    print(f"{'unit cm->m, pint per value':32s}: {pint_rate:10.0f} values/s  {1e6 / pint_rate:7.2f} us/value")
    print(f"{'unit cm->m, factor from pint':32s}: {affine_rate:10.0f} values/s  {1e6 / affine_rate:7.2f} us/value"
          f"  ({affine_rate / pint_rate:.0f}x)")


if __name__ == "__main__":
    main()
