"""Webhook channel: the notification as JSON, signed, with an idempotency key.

``POST url`` with ``Content-Type: application/json``, ``Idempotency-Key:
<notification.id>`` (the same for every retry and re-send of this group
state), ``X-CityEye-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` when a
``secret`` is configured (signed afresh for every attempt; receivers check it
with :func:`alerts.notifiers.webhook_signature.verify` and refuse replays older
than 5 minutes), and ``Authorization: Bearer`` when a
``bearer_token`` is. 2xx is delivered; 5xx/429/timeouts are retryable
(429 and 503 honour ``Retry-After``, seconds or an HTTP date); other 4xx
are permanent.

Config keys: ``name``, ``type: webhook``, ``url``, ``secret``,
``bearer_token``, ``timeout_s`` (default 10).
"""

from __future__ import annotations

from typing import Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from alerts.notification import Notification, Notifier
from alerts.notifiers.common import ChannelConfig, HttpSession, check_http_url, notification_body
from alerts.notifiers.http import SIGNATURE_HEADER, post, signature

__all__ = ["WebhookConfig", "WebhookNotifier"]


class WebhookConfig(ChannelConfig):
    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None
    bearer_token: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)


class WebhookNotifier(Notifier):
    """Delivers a :class:`Notification` as a signed JSON POST."""

    def __init__(self, config: WebhookConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self._http = HttpSession(session)

    def request_headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": notification.id}
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = signature(body, self.config.secret)
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        return headers

    async def send(self, notification: Notification) -> None:
        body = notification_body(notification)
        await post(self._http.get(), self.config.url, body, self.request_headers(notification, body),
                   self.config.timeout_s)

    async def close(self) -> None:
        await self._http.close()
