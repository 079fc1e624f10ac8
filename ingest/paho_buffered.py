"""A paho-mqtt client that reads the broker's bytes in large chunks.

paho 2.x reads a packet with several small ``recv`` calls (the fixed
header byte, each remaining-length byte, the rest) and at most one packet
per ``select`` wake-up of its network thread. A gateway draining a queue of
small QoS 1 messages then spends most of its network thread in system
calls. :class:`BufferedClient` gives paho the broker connection wrapped in
:class:`ChunkedSocket`, which reads up to :data:`CHUNK` bytes per ``recv``
and hands paho the small pieces it asks for from memory; the socket's
``pending()`` (paho already asks it for TLS sockets) tells paho's loop that
bytes are waiting, so it does not wait in ``select``, and
:meth:`BufferedClient.loop_read` parses every complete packet the chunk
holds in one go. A client without per-topic callbacks (``message_callback_add``)
calls ``on_message`` without matching each topic against an empty tree, and
a QoS 1 PUBLISH without MQTT 5 properties (the devices' readings) is
decoded without building a paho ``Properties`` object for it.

A client given an :attr:`BufferedClient.on_publishes` callback (the gateway's
bridge) gets the QoS 1 PUBLISH packets the chunk already holds decoded as one
list (:meth:`ChunkedSocket.take_publishes`): no paho ``MQTTMessage`` (and its
``threading.Condition``) per message, no three ``recv`` calls per packet, one
callback per run of packets. Any other packet (PUBACK, PINGRESP, a PUBLISH
with MQTT 5 properties or a topic alias, one cut by the chunk's end, anything
malformed) ends the run and goes through paho's own path.

Only reads change: what paho sends, its state machine, TLS and reconnection
are paho's own. With a paho without ``_create_socket`` (another major
version) the client is plain paho.
"""

from __future__ import annotations

import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["CHUNK", "ChunkedSocket", "BufferedClient", "Publish"]

#: bytes asked of the socket per ``recv`` (about a thousand small PUBLISH packets)
CHUNK = 64 * 1024
#: packets parsed per ``loop_read`` at most, so PUBACKs and pings are written in between
_MAX_PACKETS_PER_READ = 1000
_U16 = struct.Struct("!H")
#: a QoS 1 PUBLISH's first byte under this mask (the DUP and RETAIN flags left out)
_QOS1_PUBLISH_MASK, _QOS1_PUBLISH = 0xF6, 0x32

#: one decoded QoS 1 PUBLISH: (topic bytes, message id, payload)
Publish = tuple[bytes, int, bytes]
#: the properties of every MQTT 5 PUBLISH that carries none (read-only: shared by those messages)
EMPTY_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)


class ChunkedSocket:
    """``sock`` (plain or TLS) read :data:`CHUNK` bytes at a time; everything else is ``sock``'s own."""

    __slots__ = ("_sock", "_data", "_pos")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """At most ``bufsize`` bytes: from the chunk read last, else from a new chunk."""
        if self._pos >= len(self._data):
            self._data = self._sock.recv(max(bufsize, CHUNK))  # BlockingIOError / EOF (b"") go to paho
            self._pos = 0
        start = self._pos
        self._pos = start + bufsize
        if start == 0 and bufsize >= len(self._data):
            return self._data
        return self._data[start:start + bufsize]

    def take_publishes(self, v5: bool, most: int) -> list[Publish]:
        """The complete QoS 1 PUBLISH packets at the front of what is held (at most ``most``), decoded
        and consumed; stops before any other packet, an incomplete one or one paho must decode."""
        data, pos, end = self._data, self._pos, len(self._data)
        out: list[Publish] = []
        while pos < end - 1 and len(out) < most:
            if data[pos] & _QOS1_PUBLISH_MASK != _QOS1_PUBLISH:
                break
            start, length, shift = pos + 1, 0, 0
            while True:  # the remaining length: 1 to 4 bytes, 7 bits each, least significant first
                if start >= end or shift > 21:
                    return self._consumed(out, pos)
                byte = data[start]
                start += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            stop = start + length
            if stop > end or length < 2:
                break
            mid_at = start + 2 + ((data[start] << 8) | data[start + 1])
            payload_at = mid_at + 2 + v5
            if mid_at == start + 2 or payload_at > stop or (v5 and data[mid_at + 2] != 0):
                break  # no topic (an MQTT 5 alias), malformed, or MQTT 5 properties: paho's path
            out.append((data[start + 2:mid_at], (data[mid_at] << 8) | data[mid_at + 1], data[payload_at:stop]))
            pos = stop
        return self._consumed(out, pos)

    def _consumed(self, out: list[Publish], pos: int) -> list[Publish]:
        self._pos = pos
        return out

    def pending(self) -> int:
        """Bytes readable without waiting: those held here and those a TLS socket has decrypted."""
        held = len(self._data) - self._pos
        inner = getattr(self._sock, "pending", None)
        return max(held, 0) + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:  # fileno, send, setblocking, close, ...
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """:class:`paho.mqtt.client.Client` reading through a :class:`ChunkedSocket` (see the module docstring).

    ``on_publishes(client, publishes)``, if set (with ``manual_ack``), receives runs of QoS 1 PUBLISH
    packets (a list of :data:`Publish`, at most :attr:`publishes_most` at a time) instead of
    ``on_message``; the caller acknowledges them (``ack`` or its own PUBACK frames).
    """

    on_publishes: Any = None
    publishes_most: int = 1000

    def _create_socket(self) -> Any:
        return ChunkedSocket(super()._create_socket())

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered_callbacks = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        if getattr(self, "_filtered_callbacks", False):
            super()._handle_on_message(message)
            return
        # no per-topic callbacks: ``on_message`` without matching the topic against an empty tree
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:  # as paho's own: logged, raised unless suppressed
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """A QoS 1 PUBLISH for manual acks without MQTT 5 properties, decoded here; any other, by paho.

        paho builds a :class:`Properties` object for every MQTT 5 PUBLISH (about
        25 us, more than the rest of the packet); the common one carries no
        properties and gets :data:`EMPTY_PUBLISH_PROPERTIES` instead.
        """
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        if (header & 0x06) != 0x02 or not self._manual_ack or len(packet) < 2:
            return super()._handle_publish()
        mid_at = 2 + _U16.unpack_from(packet)[0]
        payload_at = mid_at + 2
        v5 = self._protocol == mqtt.MQTTv5
        if mid_at == 2 or len(packet) < payload_at + v5 or (v5 and packet[payload_at] != 0):
            return super()._handle_publish()  # empty topic (alias), properties, malformed: paho's own path
        message = mqtt.MQTTMessage(mid=_U16.unpack_from(packet, mid_at)[0], topic=bytes(packet[2:mid_at]))
        message.dup, message.qos, message.retain = bool(header & 0x08), 1, bool(header & 0x01)
        message.properties = EMPTY_PUBLISH_PROPERTIES if v5 else None
        message.payload = bytes(packet[payload_at + v5:])
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """A run of QoS 1 PUBLISH packets held in memory, to ``on_publishes`` at once; else paho's own read."""
        sock, on_publishes = self._sock, self.on_publishes
        if on_publishes is not None and self._manual_ack and self._in_packet["command"] == 0 \
                and isinstance(sock, ChunkedSocket):
            publishes = sock.take_publishes(self._protocol == mqtt.MQTTv5, self.publishes_most)
            if publishes:
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()
                with self._in_callback_mutex:
                    try:
                        on_publishes(self, publishes)
                    except Exception as err:  # as paho's own on_message: logged, raised unless suppressed
                        self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publishes: %s", err)
                        if not self.suppress_exceptions:
                            raise
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Parse the packets already read (up to a bound), not only one per wake-up."""
        rc = super().loop_read(max_packets)
        for _ in range(_MAX_PACKETS_PER_READ):
            sock = self._sock
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, ChunkedSocket) \
                    or sock.pending() <= 0:
                break
            rc = super().loop_read(1)
        return rc
