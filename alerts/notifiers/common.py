"""What every channel shares: the config base, the JSON body, an HTTP session.

Channel configs are pydantic models with ``extra="forbid"`` (a misspelt key
is an error naming it) and :class:`~pydantic.SecretStr` for every secret.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from alerts.notification import Notification
from cityeye.contracts import scrub_text

__all__ = [
    "ChannelConfig",
    "notification_body",
    "check_http_url",
    "HttpSession",
    "USER_AGENT",
    "scrub_text",
    "scrubbed",
]

USER_AGENT = "CityEye-Notifier/1"


class ChannelConfig(BaseModel):
    """Fields every receiver has: its ``name`` (used in logs and ids) and ``type``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: str


def check_http_url(value: str) -> str:
    """A pydantic validator body: ``value`` must be an absolute http(s) URL."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def scrubbed(notification: Notification) -> Notification:
    """``notification`` itself, or a copy with its text made UTF-8-safe (see :func:`scrub_text`)."""
    data = notification.to_dict()
    clean = scrub_text(data)
    return notification if clean == data else Notification.from_dict(clean)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def notification_body(notification: Notification) -> bytes:
    """The notification as compact UTF-8 JSON (non-finite numbers become null)."""
    data = _finite(scrub_text(notification.to_dict()))
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class HttpSession:
    """One lazily opened :class:`aiohttp.ClientSession` per notifier (or a shared one given)."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owned = session is None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
            self._owned = True
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
        self._session = None
