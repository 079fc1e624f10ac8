"""Forward every alert event to one webhook (consumer side, at-least-once).

Each :class:`~cityeye.contracts.AlertEvent` is POSTed to
``settings.webhook.url`` as its JSON with ``Idempotency-Key: <event_id>``
(the same on every retry and redelivery, so the receiver can drop
duplicates) and, when ``settings.webhook.secret`` is set,
``X-CityEye-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``, signed afresh
for every attempt (:mod:`alerts.notifiers.webhook_signature`).

5xx, 429 (honouring ``Retry-After``), timeouts and refused connections are
retried with :class:`~alerts.notification.Backoff` (``backoff_initial_s``,
``backoff_max_s``, ``max_attempts``); other 4xx, and the last failed
attempt, make the event a :class:`~alerts.sinks.base.Rejected` that the
consumer writes to ``alerts.deadletter`` before committing. Events are sent
one at a time in topic order; within a batch that is being retried after a
shutdown-interrupted flush, events already delivered are not sent again.
"""

from __future__ import annotations

import logging
import random

import aiohttp

from alerts.notification import Backoff
from alerts.notifiers.http import SIGNATURE_HEADER, post, safe_url, signature
from alerts.sinks.base import BaseSink, Rejected, SinkWriteError
from cityeye.config import WebhookSettings
from cityeye.contracts import AlertEvent, to_json
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["WebhookForwarder", "event_request"]

log = logging.getLogger(__name__)


def event_request(event: AlertEvent, secret=None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the POST for ``event``."""
    body = to_json(event)
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": event.event_id}
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    return body, headers


class WebhookForwarder(BaseSink[AlertEvent]):
    """A sink that POSTs each alert event to ``settings.url`` with retries.

    ``WebhookForwarder(settings, batch_size=100, flush_interval_s=0.2,
    session=None, rng=None)``; ``rng`` seeds the backoff jitter.
    """

    name = "webhook"

    def __init__(self, settings: WebhookSettings, *, batch_size: int = 100, flush_interval_s: float = 0.2,
                 session: aiohttp.ClientSession | None = None, rng: random.Random | None = None) -> None:
        if not settings.url:
            raise ValueError("webhook forwarder needs settings.webhook.url")
        super().__init__(batch_size, flush_interval_s)
        self.settings = settings
        self.backoff = Backoff(initial_s=settings.backoff_initial_s, max_s=settings.backoff_max_s,
                               max_attempts=settings.max_attempts)
        self._rng = rng or random.Random()
        self._session = session
        self._owns_session = session is None
        self._delivered: set[str] = set()

    def describe(self) -> dict[str, str]:
        return {"sink": self.name, "url": safe_url(self.settings.url or "")}

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def write(self, batch: list[AlertEvent]) -> list[Rejected[AlertEvent]]:
        await self.start()
        rejected: list[Rejected[AlertEvent]] = []
        for event in batch:
            if event.event_id in self._delivered:
                continue
            failure = await self._deliver(event)
            if failure is not None:
                rejected.append(failure)
            self._delivered.add(event.event_id)
        self._delivered.clear()
        return rejected

    async def _deliver(self, event: AlertEvent) -> Rejected[AlertEvent] | None:
        attempt = 0
        while True:
            attempt += 1
            body, headers = event_request(event, self.settings.secret)  # signed afresh: its timestamp is now
            try:
                await post(self._session, self.settings.url, body, headers, self.settings.timeout_s)
                return None
            except PermanentDeliveryError as exc:
                log.warning("webhook refused event %s: %s", event.event_id, exc)
                return Rejected(event, str(exc), exc.status)
            except RetryableDeliveryError as exc:
                if attempt >= self.backoff.max_attempts:
                    log.warning("webhook gave up on event %s after %d attempts: %s", event.event_id, attempt, exc)
                    return Rejected(event, f"gave up after {attempt} attempts: {exc}", exc.status)
                delay = self.backoff.delay(attempt, exc.retry_after, self._rng)
                log.info("webhook attempt %d for event %s failed (%s); retrying in %.2f s",
                         attempt, event.event_id, exc, delay)
                if await self.pause(delay):
                    raise SinkWriteError(f"stopping while retrying event {event.event_id}") from None

    def discard(self) -> None:
        super().discard()
        self._delivered.clear()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None
