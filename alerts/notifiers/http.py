"""HTTP delivery shared by the webhook and CAP notifiers and the webhook forwarder.

:func:`post` sends one body and maps the outcome onto the
:class:`~alerts.notification.Notifier` contract: 2xx returns; 5xx, 408,
425, 429 (with ``retry_after`` from ``Retry-After``), timeouts and
connection errors raise :class:`RetryableDeliveryError`; other statuses
raise :class:`PermanentDeliveryError`. :func:`signature` is the
``X-CityEye-Signature`` value (``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``,
:mod:`alerts.notifiers.webhook_signature`), made afresh for every attempt.
Errors name the status and the URL without its query string or user info,
never the secret.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from alerts.notifiers.webhook_signature import SIGNATURE_HEADER, SignatureError, sign, verify
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError

__all__ = ["SIGNATURE_HEADER", "signature", "verify_signature", "parse_retry_after", "safe_url", "post"]

#: statuses other than 5xx that are worth retrying
_RETRYABLE_4XX = {408, 425, 429}


def signature(body: bytes, secret: SecretStr | str) -> str:
    """The ``X-CityEye-Signature`` value for ``body`` now: ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``."""
    return sign(body, secret)


def verify_signature(body: bytes, secret: SecretStr | str, header: str | None) -> bool:
    """Whether a received signature header is right and recent (see :mod:`.webhook_signature`)."""
    try:
        verify(body, secret, header)
    except SignatureError:
        return False
    return True


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (which may hold tokens), for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
               timeout_s: float) -> int:
    """POST ``body``; return the 2xx status or raise a :class:`~cityeye.errors.DeliveryError`."""
    where = safe_url(url)
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if 200 <= resp.status < 300:
                return resp.status
            detail = (await resp.text(errors="replace"))[:200].strip()
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    except asyncio.TimeoutError:
        raise RetryableDeliveryError(f"POST {where} timed out after {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise RetryableDeliveryError(f"POST {where} failed: {type(exc).__name__}") from None
    message = f"POST {where} answered HTTP {resp.status}" + (f": {detail}" if detail else "")
    if resp.status >= 500 or resp.status in _RETRYABLE_4XX:
        raise RetryableDeliveryError(message, status=resp.status, retry_after=retry_after)
    raise PermanentDeliveryError(message, status=resp.status)
