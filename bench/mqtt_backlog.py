"""Queue a backlog of QoS 1 messages on an MQTT broker quickly, for the benches.

A paho publisher pays a Python callback, a lock and a socket write per
message (about 3.5 k messages/s here: 150 k readings per gateway session
took 40 s, longer than the gateways' drain). This writes the MQTT 3.1.1
packets itself: one CONNECT, then the PUBLISH packets (QoS 1, message ids
1..65535 in turn) in chunks of ``chunk`` per socket write, reading the
broker's PUBACKs (4 bytes each, the only thing a publisher that subscribed to
nothing is sent) so that at most ``window`` are unacknowledged. It returns
once the broker has acknowledged every message: they are queued for the
sessions subscribed to them. :class:`WindowedPublisher` is the same
publisher for a caller that paces its messages itself (bench/paced_publishers.py).

    from mqtt_backlog import preload
    seconds = preload(port, [(topic, payload), ...])
    end_sessions(port, ["bench-gw1-0", ...])   # the broker forgets them, their queues and subscriptions

A bench that leaves persistent sessions subscribed makes the broker queue
every later backlog for them too: :func:`end_sessions` removes them.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Sequence

__all__ = ["WindowedPublisher", "end_sessions", "preload", "publish_packet"]

_CONNACK = b"\x20\x02"
_DISCONNECT = b"\xe0\x00"
_PUBACK_SIZE = 4
_MAX_MID = 65535


def _remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    """An MQTT 3.1.1 CONNECT with the clean-session flag: the broker discards any session of ``client_id``
    (its subscriptions and queued messages) and keeps none after this connection."""
    body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _utf8(client_id)  # 3.1.1, clean
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    """A QoS 1 PUBLISH packet."""
    body = _utf8(topic) + struct.pack("!H", mid) + payload
    return b"\x32" + _remaining_length(len(body)) + body


def _connect(host: str, port: int, client_id: str, timeout: float) -> socket.socket:
    """A socket connected to the broker with a clean session for ``client_id`` (CONNACK read)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(_connect_packet(client_id))
        connack = _read_exactly(sock, 4)
        if connack[:2] != _CONNACK or connack[3] != 0:
            raise ConnectionError(f"the MQTT broker refused the connection: {connack!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def end_sessions(port: int, client_ids: Sequence[str], host: str = "127.0.0.1", timeout: float = 60.0) -> None:
    """Remove the broker's sessions of ``client_ids`` (subscriptions and queued messages): a clean-session
    CONNECT and a DISCONNECT each."""
    for client_id in client_ids:
        with _connect(host, port, client_id, timeout) as sock:
            sock.sendall(_DISCONNECT)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("the MQTT broker closed the connection")
        data += part
    return data


class WindowedPublisher:
    """A lean QoS 1 publisher on a socket of its own: PUBLISH packets written in chunks, PUBACKs counted.

    :meth:`send` writes a chunk of messages with one socket write;
    :meth:`poll_acks` counts the PUBACKs the broker has sent (waiting for one
    when asked to); at most ``window`` messages should be unacknowledged (the
    caller checks :attr:`unacknowledged`). Use as a context manager.

    Parameters
    ----------
    port : int
        The broker's port.
    host : str
        The broker's address.
    client_id : str
        The MQTT client id (a clean session).
    window : int
        Most unacknowledged messages; below the 16-bit message id space.
    timeout : float
        Seconds a socket operation may take.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", client_id: str = "bench-backlog", window: int = 20_000,
                 timeout: float = 300.0) -> None:
        if window >= _MAX_MID:
            raise ValueError("window must stay below the 16-bit message id space")
        self.address, self.client_id, self.window, self.timeout = (host, port), client_id, window, timeout
        self.sock: socket.socket | None = None
        self.sent = self.acked = 0
        self._pending = b""  # a PUBACK split over two reads

    def __enter__(self) -> "WindowedPublisher":
        self.sock = _connect(*self.address, self.client_id, self.timeout)
        self.sock.settimeout(None)  # blocking: MSG_DONTWAIT reads return at once (poll_acks bounds its waits)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sock is not None:
            try:
                self.sock.sendall(_DISCONNECT)
            finally:
                self.sock.close()
                self.sock = None

    @property
    def unacknowledged(self) -> int:
        """Messages sent and not yet acknowledged."""
        return self.sent - self.acked

    def send(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write ``items`` (topic, payload) as QoS 1 PUBLISH packets with one socket write."""
        first = self.sent
        self.sock.sendall(b"".join(publish_packet(topic, body, (first + i) % _MAX_MID + 1)
                                   for i, (topic, body) in enumerate(items)))
        self.sent += len(items)

    def poll_acks(self, wait: bool = False) -> int:
        """Count the PUBACKs received (waiting for some when ``wait``); the number acknowledged so far."""
        if wait and not select.select([self.sock], [], [], self.timeout)[0]:
            raise TimeoutError(f"the MQTT broker acknowledged nothing within {self.timeout:g} s")
        try:
            received = self.sock.recv(1 << 16, 0 if wait else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return self.acked
        if not received:
            raise ConnectionError(f"the MQTT broker closed the connection after {self.acked} acknowledgements")
        data = self._pending + received
        whole = len(data) - len(data) % _PUBACK_SIZE
        self.acked, self._pending = self.acked + whole // _PUBACK_SIZE, data[whole:]
        return self.acked

    def flush(self) -> None:
        """Wait until the broker has acknowledged every message sent."""
        while self.acked < self.sent:
            self.poll_acks(wait=True)


def preload(port: int, items: Sequence[tuple[str, bytes]], host: str = "127.0.0.1", window: int = 20_000,
            chunk: int = 1000, client_id: str = "bench-backlog", timeout: float = 300.0) -> float:
    """Publish ``items`` (topic, payload) at QoS 1 to the broker at ``host:port``; return the seconds taken
    once the broker has acknowledged all of them."""
    started = time.perf_counter()
    with WindowedPublisher(port, host, client_id, window, timeout) as pub:
        while pub.acked < len(items):
            room = min(chunk, window - pub.unacknowledged, len(items) - pub.sent)
            if room > 0:
                pub.send(items[pub.sent:pub.sent + room])
            # take what acks there are, waiting only when everything is sent or the window is full
            pub.poll_acks(wait=pub.sent >= len(items) or pub.unacknowledged >= window)
    return time.perf_counter() - started
