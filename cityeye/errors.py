"""CityEye's exceptions: one root, a small tree.

::

    CityEyeError
    ├── ConfigError            invalid configuration (names the file/field)
    │   └── RegistryError      invalid sensor registry (names file, line, field)
    ├── ServerStartError       an embedded server did not start
    ├── ValidationError        a reading the gateway refuses (becomes a dead letter)
    └── DeliveryError          a notification could not be delivered
        ├── RetryableDeliveryError   5xx, 429, timeouts: try again later
        └── PermanentDeliveryError   other 4xx, bad config: dead-letter now

Messages never contain secrets (tokens, passwords, HMAC keys).
"""

from __future__ import annotations

__all__ = [
    "CityEyeError",
    "ConfigError",
    "RegistryError",
    "ServerStartError",
    "ValidationError",
    "DeliveryError",
    "RetryableDeliveryError",
    "PermanentDeliveryError",
]


class CityEyeError(Exception):
    """Root of every CityEye error."""


class ConfigError(CityEyeError):
    """Invalid configuration."""


class RegistryError(ConfigError):
    """Invalid sensor registry entry."""


class ServerStartError(CityEyeError):
    """An embedded server did not start."""


class ValidationError(CityEyeError):
    """A reading was refused; ``str(exc)`` is the dead-letter reason."""


class DeliveryError(CityEyeError):
    """A notification could not be delivered."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableDeliveryError(DeliveryError):
    """Delivery failed in a way worth retrying (5xx, 429, timeout, refused)."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for good (other 4xx); dead-letter it."""
