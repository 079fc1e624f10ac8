"""docs/devices.md: the embedded-stack lines of "Try it" run as written, with the effects it states."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from cityeye.contracts import TOPIC_DEADLETTER
from cityeye.reading_records import readings_in
from cityeye.device_credentials import read_credentials
from cityeye.sensor_registry import load_registry
from ingest.gateway import Gateway
from launch.embedded import EmbeddedStack
from tests.kafka_helpers import read_topic

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "devices.md"


def try_it_lines() -> list[str]:
    section = DOC.read_text().split("### Try it on the embedded stack", 1)[1]
    (block,) = re.findall(r"```sh\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    return block.strip().splitlines()


async def test_try_it_on_the_embedded_stack(tmp_path):
    lines = try_it_lines()
    assert [line.split()[0] for line in lines] == ["PORT=$(.venv/bin/python", "PASS=$(cityeye", "mosquitto_pub",
                                                   "mosquitto_pub"]
    stack = EmbeddedStack(tmp_path / "var" / "embedded", with_influx=False)
    settings = await asyncio.to_thread(stack.start_servers)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    gateway = Gateway(settings, load_registry(settings.registry))
    await gateway.start()
    try:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = await asyncio.to_thread(subprocess.run, ["bash", "-euc", "\n".join(lines)], cwd=tmp_path, env=env,
                                       capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        await read_topic(settings.kafka, "readings.water_level", 1)
        await asyncio.sleep(1.0)  # time for the refused one to arrive, were it let through
        readings = await read_topic(settings.kafka, "readings.water_level", 2, timeout=2)
        letters = await read_topic(settings.kafka, TOPIC_DEADLETTER, 1, timeout=1)
    finally:
        await gateway.stop()
        await asyncio.to_thread(stack.stop)
    got = readings_in(readings)  # one record may hold several readings (aggregated per partition)
    assert [(r.sensor_id, r.values) for r in got] == [("wl-huangpu-01", {"level_m": 3.12})]
    assert letters == []  # the spoofed reading never reached the gateway at all
    password = read_credentials(stack.credentials_path).devices["wl-huangpu-01"].get_secret_value()
    assert password not in done.stdout + done.stderr
