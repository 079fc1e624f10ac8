"""What the MQTT bridge says when its start times out: a broker that answered but has not confirmed the
subscription yet (busy) is not reported as unreachable.

The silent broker here is a bare TCP server that answers CONNECT with a CONNACK and never answers the
SUBSCRIBE: a real broker that is slow to confirm (Mosquitto resending a long session queue) cannot be
made to stay slow on cue.
"""

from __future__ import annotations

import asyncio
import logging

from cityeye.config import MqttSettings
from ingest.bridge import MqttBridge
from launch.servers import free_port

_CONNACK = b"\x20\x02\x00\x00"


async def _start_bridge(port: int, caplog) -> list[str]:
    bridge = MqttBridge(MqttSettings(port=port, client_id="bridge-start-test"), asyncio.get_running_loop())
    with caplog.at_level(logging.WARNING, logger="ingest.bridge"):
        await bridge.start(timeout=1.0)
    await bridge.stop()
    return [r.getMessage() for r in caplog.records if r.name == "ingest.bridge"]


async def test_a_broker_that_accepts_but_does_not_confirm_the_subscription_is_not_called_unreachable(caplog):
    subscribes = []

    async def connack_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # the CONNECT
        writer.write(_CONNACK)
        await writer.drain()
        subscribes.append(await reader.read(1024))  # the SUBSCRIBE, left unanswered
        await reader.read(1024)

    server = await asyncio.start_server(connack_only, "127.0.0.1", 0)
    async with server:
        messages = await _start_bridge(server.sockets[0].getsockname()[1], caplog)
    assert subscribes and subscribes[0][0] >> 4 == 8  # the bridge did subscribe
    assert any("accepted the connection but did not confirm the subscription" in m for m in messages), messages
    assert not any("not reachable" in m for m in messages), messages


async def test_a_broker_nobody_listens_for_is_reported_unreachable(caplog):
    messages = await _start_bridge(free_port(), caplog)
    assert any("not reachable within 1 s" in m for m in messages), messages
