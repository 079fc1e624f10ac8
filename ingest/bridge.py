"""paho-mqtt (network thread) <-> asyncio bridge with manual, in-order acks.

:class:`MqttBridge` runs a paho 2.x client (``CallbackAPIVersion.VERSION2``,
``manual_ack=True``, persistent session: MQTT 3.1.1 ``clean_session=False``,
or MQTT 5 ``clean_start=False`` with a session expiry, with a fixed client
id, so the broker queues QoS 1 messages while the gateway is down). Received
messages go into an inbox (a deque) that the asyncio side drains in batches
(:meth:`MqttBridge.take`): the paho thread wakes the loop with one
``call_soon_threadsafe`` per burst, not per message. :meth:`MqttBridge.ack_all`
sends the PUBACKs only when the caller says the messages are safe (in Kafka),
a batch's QoS 1 PUBACKs as one write. The paho client is
:class:`ingest.paho_buffered.BufferedClient` (reads in large chunks and hands
over each run of QoS 1 messages a chunk holds at once: one lock and one
wake-up per run).

Scale-out: with ``share_group`` set the bridge subscribes to
``$share/<group>/<filter>`` (MQTT 5 shared subscription; Mosquitto also
accepts it from 3.1.1 clients) and the broker spreads the messages over the
group's gateways, each with its own client id and session.

Backpressure: at most ``max_unacked`` messages are held unacknowledged.
When that many are outstanding the paho thread waits in ``on_message``
(it stops reading the socket, so TCP pushes back on the broker) until the
asyncio side acknowledges some. The broker's own in-flight window usually
bounds this first.

Message ids are reused across connections, so every :class:`Inbound` carries
the connection generation it arrived on; acks for an older connection are
skipped (the broker redelivers those messages on the new connection).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import threading
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityeye.config import MqttSettings
from ingest.paho_buffered import BufferedClient, Publish

__all__ = ["Inbound", "MqttBridge", "puback_frames"]

log = logging.getLogger(__name__)

#: a PUBACK with reason "success" (MQTT 3.1.1 and 5: the reason code and properties may be left out)
_PUBACK = struct.Struct("!BBH")


def puback_frames(mids: Sequence[int]) -> bytes:
    """The PUBACK packets of ``mids``, in order, as one byte string (one socket write for a batch)."""
    pack = _PUBACK.pack
    return b"".join([pack(mqtt.PUBACK, 2, mid) for mid in mids])


class Inbound:
    """One MQTT message as received: ``mid``/``qos``/``generation`` identify its ack."""

    __slots__ = ("topic", "payload", "mid", "qos", "generation", "received_at")

    def __init__(self, topic: str, payload: bytes, mid: int, qos: int, generation: int, received_at: float) -> None:
        self.topic = topic
        self.payload = payload
        self.mid = mid
        self.qos = qos
        self.generation = generation
        self.received_at = received_at

    def __repr__(self) -> str:
        return f"Inbound({self.topic!r}, mid={self.mid}, qos={self.qos}, generation={self.generation})"


class MqttBridge:
    """Subscribes to ``settings.topic_filters`` and ``extra_filters`` (in their shared form with
    ``settings.share_group``) and to ``own_filters`` as they are (this client's alone);
    :meth:`take` hands the messages to ``loop``."""

    def __init__(self, settings: MqttSettings, loop: asyncio.AbstractEventLoop, *,
                 max_unacked: int = 5000, clock=None, keepalive: int = 30, extra_filters: Sequence[str] = (),
                 own_filters: Sequence[str] = ()) -> None:
        import time

        self.settings = settings
        self.filters = [*(settings.shared(f) for f in (*settings.topic_filters, *extra_filters)), *own_filters]
        self.loop = loop
        #: received, not yet taken (appended by the paho thread, drained by :meth:`take`)
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._arrived = asyncio.Event()
        self._wake_pending = False
        self.connected = asyncio.Event()
        self._clock = clock or time.time
        self._keepalive = keepalive
        self._max_unacked = max_unacked
        self._closing = threading.Event()
        self._generation = 0
        self._unacked = 0
        self._lock = threading.Lock()
        #: the paho thread waits on this while ``max_unacked`` messages are held
        self._room = threading.Condition(self._lock)
        self._v5 = settings.protocol == "5"
        self.client = BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=None if self._v5 else False,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            manual_ack=True,
        )
        settings.configure_client(self.client)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publishes = self._on_publishes  # QoS 1 runs, decoded by BufferedClient
        self.client.publishes_most = min(max_unacked, 1000)
        self.client.on_subscribe = self._on_subscribe

    # -- paho network thread -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason_code)
            return
        with self._lock:
            self._generation += 1
        client.subscribe([(f, self.settings.qos) for f in self.filters])
        log.info("MQTT connected to %s:%d (session present: %s)",
                 self.settings.host, self.settings.port, flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        filters = self.filters
        refused = [f"{f} ({rc})" for f, rc in zip(filters, reason_codes) if rc.is_failure]
        if refused:
            log.error("MQTT broker refused the subscription to %s (check the gateway account's ACL)",
                      ", ".join(refused))
            if len(refused) == len(filters):
                return
        log.info("MQTT subscribed to %s", ", ".join(f for f, rc in zip(filters, reason_codes) if not rc.is_failure))
        self._to_loop(self.connected.set)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._closing.is_set():
            log.warning("MQTT connection lost (%s); paho reconnects, unacked messages will be redelivered", reason_code)
        self._to_loop(self.connected.clear)

    def _to_loop(self, callback, *args) -> bool:
        """Run ``callback`` on the asyncio loop; False if the loop is already closed."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
            return True
        except RuntimeError:
            return False

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        """A message paho decoded itself (QoS 0 or 2, MQTT 5 properties, ...)."""
        generation = self._hold(1)
        if generation is None:
            return  # never acked: the broker redelivers it to the next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", errors="replace")
        self._inbox.append(Inbound(topic, bytes(message.payload), message.mid, message.qos, generation,
                                   self._clock()))
        self._wake_loop(1)

    def _on_publishes(self, client, publishes: list[Publish]) -> None:
        """A run of QoS 1 messages :class:`BufferedClient` decoded from one chunk (at most ``max_unacked``)."""
        generation = self._hold(len(publishes))
        if generation is None:
            return  # never acked: the broker redelivers them to the next session
        received_at = self._clock()
        append = self._inbox.append
        for raw_topic, mid, payload in publishes:
            try:
                topic = raw_topic.decode()
            except UnicodeDecodeError:
                topic = raw_topic.decode("utf-8", errors="replace")
            append(Inbound(topic, payload, mid, 1, generation, received_at))
        self._wake_loop(len(publishes))

    def _hold(self, n: int) -> int | None:
        """Wait until ``n`` more messages fit under ``max_unacked`` and count them held; the
        connection generation they arrived on, or None when the bridge is closing."""
        with self._room:  # one lock per message or run (a semaphore would take a condition's lock too)
            while self._unacked and self._unacked + n > self._max_unacked:
                if self._closing.is_set():
                    return None
                self._room.wait(0.5)
            self._unacked += n
            return self._generation

    def _wake_loop(self, n: int) -> None:
        """Wake the loop for what was just appended, once per burst (the loop drains everything there is)."""
        if not self._wake_pending:
            self._wake_pending = True
            if not self._to_loop(self._wake):
                with self._lock:  # the loop is closed: nothing will ack them, the broker redelivers
                    self._unacked -= n

    def _wake(self) -> None:  # on the loop
        self._wake_pending = False
        self._arrived.set()

    # -- asyncio side ----------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` on ``topic`` at the session's QoS (queued by paho, never blocks)."""
        self.client.publish(topic, payload, qos=self.settings.qos)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (retrying in the background) and wait until the broker confirmed the subscription."""
        self._closing.clear()
        kwargs = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry_s
            props.ReceiveMaximum = self.settings.receive_maximum
            kwargs = {"clean_start": False, "properties": props}
        try:
            self.client.connect_async(self.settings.host, self.settings.port, keepalive=self._keepalive, **kwargs)
        except OSError as exc:
            raise ConnectionError(f"cannot reach MQTT broker {self.settings.host}:{self.settings.port}: {exc}") from None
        self.client.loop_start()
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except asyncio.TimeoutError:
            if self._generation > 0:  # a CONNACK came: a busy broker (a long session queue to resend), not a lost one
                log.warning("MQTT broker %s:%d accepted the connection but did not confirm the subscription "
                            "within %.0f s; still waiting", self.settings.host, self.settings.port, timeout)
            else:
                log.warning("MQTT broker %s:%d not reachable within %.0f s; still trying",
                            self.settings.host, self.settings.port, timeout)

    async def take(self, most: int, linger: float = 0.0) -> list[Inbound]:
        """The messages received so far, oldest first, at most ``most``; waits for one if there is none.

        Parameters
        ----------
        most : int
            Most messages to return.
        linger : float
            Seconds to wait for more once the first message has arrived, when the inbox was empty
            at the call and holds fewer than ``most`` then: a light stream's messages are taken a
            few at a time instead of one wake-up's worth each (fewer batches, so less fixed cost
            per message), at the price of up to ``linger`` s of latency. Messages that were
            already waiting (the caller was busy: a backlog) are taken at once.
        """
        inbox = self._inbox
        waited = not inbox
        while not inbox:
            self._arrived.clear()
            if inbox:
                break
            await self._arrived.wait()
        if waited and linger > 0 and len(inbox) < most:
            await asyncio.sleep(linger)
        n = min(most, len(inbox))
        return [inbox.popleft() for _ in range(n)]

    def pending(self) -> int:
        """Messages received and not yet taken."""
        return len(self._inbox)

    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged."""
        return self._unacked

    def ack(self, item: Inbound) -> None:
        """Acknowledge ``item`` to the broker (QoS 1/2) and free its slot."""
        self.ack_all([item])

    def ack_all(self, items: list[Inbound]) -> None:
        """Acknowledge ``items`` in order and free their slots.

        The QoS 1 PUBACKs of a batch go to paho's output queue as one write
        (one wake-up of the network thread and one ``send`` instead of one
        each); QoS 2 messages get their PUBCOMP through ``client.ack``.
        """
        if not items:
            return
        with self._room:
            self._unacked -= len(items)
            self._room.notify()  # the paho thread, if it waits for room
            generation = self._generation
            mids = [item.mid for item in items if item.generation == generation and item.qos == 1]
            if mids:
                self._queue_pubacks(mids)
            for item in items:
                if item.qos == 2 and item.generation == generation:
                    self.client.ack(item.mid, item.qos)

    def _queue_pubacks(self, mids: list[int]) -> None:
        queue = getattr(self.client, "_packet_queue", None)  # paho 2.x; else one ack() each
        if queue is None or len(mids) == 1:
            for mid in mids:
                self.client.ack(mid, 1)
        else:
            queue(mqtt.PUBACK, puback_frames(mids), mids[-1], 1)

    async def stop(self) -> None:
        """Disconnect; messages not yet acknowledged stay queued at the broker."""
        self._closing.set()
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
