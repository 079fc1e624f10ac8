"""Per-device token buckets: a device that floods is limited, the others are not.

Each registered sensor has its own bucket of ``burst`` tokens refilled at
``messages_per_s``; a message takes one token or, with none left, is refused
(the gateway dead-letters it as ``rate_limited``). Messages whose topic names
no registered sensor share one bucket, so random sensor ids cannot grow the
table or bypass the limit.
"""

from __future__ import annotations

from cityeye.config import RateLimitSettings

__all__ = ["DeviceRateLimiter", "UNREGISTERED"]

#: the bucket of every message whose topic names no registered sensor
UNREGISTERED = ""


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class DeviceRateLimiter:
    """``allow(device, now)``: True while the device is within its rate.

    Parameters
    ----------
    settings
        ``ingest.rate_limit``; when not enabled every message is allowed.
    known
        The registered sensor ids; any other id is counted in the shared
        :data:`UNREGISTERED` bucket.
    """

    def __init__(self, settings: RateLimitSettings, known) -> None:
        self.rate = settings.messages_per_s
        self.burst = float(settings.burst)
        self.enabled = settings.enabled
        self._known = known
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, device: str | None, now: float) -> bool:
        """Take a token from ``device``'s bucket; False when it has none left."""
        if not self.enabled:
            return True
        key = device if device is not None and device in self._known else UNREGISTERED
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        elif now > bucket.at:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False
