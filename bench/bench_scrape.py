"""How long each CityEye process takes to answer a Prometheus scrape while the pipeline is busy.

Starts the embedded stack as ``cityeye run`` does (Tansu, Mosquitto, the
gateway, worker, sinks and dispatcher processes, each serving its metrics on
a free port, the sinks writing to a local webhook receiver) and the simulated
flood at ``--speed`` (default 3000x, as tests/test_metrics_scrape.py), then
GETs every process's ``/metrics`` every ``--every`` seconds for ``--seconds``
seconds, the way Prometheus does (``Accept: application/openmetrics-text``).
Prints, per process, the answers, refusals (not serving yet), the median,
99th percentile and slowest answer in milliseconds, and the largest body,
beside the 1-minute load average before and after. A scrape must answer
well within Prometheus's ``scrape_timeout`` (1 s when scraping every second).
Load the machine first to see it under load, e.g.
``for i in 1 2; do (timeout 300 python3 -c 'while 1: pass' &); done``.
Figures only: nothing here asserts timings.

    .venv/bin/python bench/bench_scrape.py [--seconds 60] [--every 0.5] [--speed 3000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launch.embedded import EmbeddedStack  # noqa: E402
from launch.servers import free_port  # noqa: E402
from tests.alerting_helpers import receiver_in_thread  # noqa: E402

ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def scrape(port: int, timeout: float = 10.0) -> tuple[float, int] | None:
    """``(seconds, body bytes)`` of one GET of ``/metrics``; ``None`` when nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": ACCEPT})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            size = len(response.read())
    except OSError:
        return None
    return time.perf_counter() - t0, size


def load1() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to scrape (default: %(default)s)")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between rounds (default: %(default)s)")
    parser.add_argument("--speed", type=float, default=3000.0, help="simulation speed (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cityeye-scrape-") as tmp, receiver_in_thread() as receiver:
        stack = EmbeddedStack(Path(tmp) / "stack", with_influx=False, api_port=free_port(),
                              extra_config={"webhook": {"url": receiver.url("sink")}})
        try:
            stack.start_servers()
            stack.start_services()
            stack.start_simulators(speed=args.speed, scenario="flood", seed=7, duration_h=24)
            before = load1()
            answers: dict[str, list[tuple[float, int]]] = {name: [] for name in stack.metrics_ports}
            refused = dict.fromkeys(stack.metrics_ports, 0)
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                for name, port in stack.metrics_ports.items():
                    answer = scrape(port)
                    if answer is None:
                        refused[name] += 1
                    else:
                        answers[name].append(answer)
                time.sleep(args.every)
            print(f"load average (1 min) {before} before, {load1()} after; {args.seconds:g} s at {args.speed:g}x")
            print(f"{'process':<11} {'answers':>7} {'refused':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
                  f"{'bytes':>7}")
            for name, got in answers.items():
                times = sorted(seconds * 1000 for seconds, _ in got) or [float("nan")]
                p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
                print(f"{name:<11} {len(got):>7} {refused[name]:>7} {statistics.median(times):>8.1f} {p99:>8.1f} "
                      f"{times[-1]:>8.1f} {max((size for _, size in got), default=0):>7}")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
