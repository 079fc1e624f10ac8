"""Webhook notifier against a real local HTTP receiver."""

from __future__ import annotations

import json
import logging
import time
from email.utils import formatdate

import pytest

from alerts.notifiers import build_notifier
from alerts.notifiers.http import SIGNATURE_HEADER, parse_retry_after, verify_signature
from alerts.notifiers.webhook_signature import SignatureError, verify
from cityeye.errors import PermanentDeliveryError, RetryableDeliveryError
from launch.servers import free_port
from tests.alerting_helpers import Receiver
from tests.notify_helpers import sample_alert, sample_notification

SECRET = "hmac-key-do-not-leak"


async def test_delivers_signed_json_with_idempotency_key():
    async with Receiver() as rx:
        notifier = build_notifier({"name": "ops-hook", "type": "webhook", "url": rx.url(), "secret": SECRET})
        n = sample_notification()
        await notifier.send(n)
        await notifier.send(n)
        await notifier.close()
    first, second = rx.requests
    assert first.headers["Idempotency-Key"] == n.id == second.headers["Idempotency-Key"]
    assert first.headers["Content-Type"].startswith("application/json")
    assert verify_signature(first.body, SECRET, first.headers[SIGNATURE_HEADER])
    assert not verify_signature(first.body + b" ", SECRET, first.headers[SIGNATURE_HEADER])
    body = json.loads(first.body)
    assert body["id"] == n.id and body["alerts"][0]["message"] == n.alerts[0].message


async def test_no_secret_means_no_signature_and_bearer_token_is_sent():
    async with Receiver() as rx:
        notifier = build_notifier({"name": "h", "type": "webhook", "url": rx.url(), "bearer_token": "tok"})
        await notifier.send(sample_notification())
        await notifier.close()
    assert SIGNATURE_HEADER not in rx.requests[0].headers
    assert rx.requests[0].headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(status):
    async with Receiver(script=[status]) as rx:
        notifier = build_notifier({"name": "h", "type": "webhook", "url": rx.url()})
        with pytest.raises(RetryableDeliveryError) as info:
            await notifier.send(sample_notification())
        await notifier.close()
    assert info.value.status == status


async def test_429_honours_retry_after_seconds_and_http_date():
    date = formatdate(2_000_000_000, usegmt=True)
    async with Receiver(script=[(429, {"Retry-After": "7"}), (429, {"Retry-After": date})]) as rx:
        notifier = build_notifier({"name": "h", "type": "webhook", "url": rx.url()})
        with pytest.raises(RetryableDeliveryError) as first:
            await notifier.send(sample_notification())
        with pytest.raises(RetryableDeliveryError) as second:
            await notifier.send(sample_notification())
        await notifier.close()
    assert first.value.status == 429 and first.value.retry_after == 7.0
    assert second.value.retry_after > 0
    assert parse_retry_after(date, now=1_999_999_990) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("status", [400, 401, 404, 410])
async def test_other_4xx_are_permanent(status):
    async with Receiver(script=[status]) as rx:
        notifier = build_notifier({"name": "h", "type": "webhook", "url": rx.url()})
        with pytest.raises(PermanentDeliveryError) as info:
            await notifier.send(sample_notification())
        await notifier.close()
    assert info.value.status == status


async def test_connection_refused_is_retryable_and_secrets_stay_out(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/hook?token=query-secret"
    notifier = build_notifier({"name": "h", "type": "webhook", "url": url, "secret": SECRET,
                               "bearer_token": "bearer-secret", "timeout_s": 2})
    with pytest.raises(RetryableDeliveryError) as info:
        await notifier.send(sample_notification())
    await notifier.close()
    text = str(info.value) + caplog.text
    for secret in (SECRET, "bearer-secret", "query-secret"):
        assert secret not in text
    assert SECRET not in repr(notifier.config) and "bearer-secret" not in repr(notifier.config)


async def test_lone_surrogates_in_text_are_replaced_not_fatal():
    async with Receiver() as rx:
        notifier = build_notifier({"name": "h", "type": "webhook", "url": rx.url()})
        await notifier.send(sample_notification(alerts=[sample_alert(1, message="bad \ud800 text")]))
        await notifier.close()
    assert json.loads(rx.requests[0].body)["alerts"][0]["message"] == "bad \ufffd text"


async def test_a_slow_receiver_is_a_retryable_timeout():
    async with Receiver(script=[1.0]) as rx:
        notifier = build_notifier({"name": "h", "type": "webhook", "url": rx.url(), "timeout_s": 0.2})
        with pytest.raises(RetryableDeliveryError, match="timed out"):
            await notifier.send(sample_notification())
        await notifier.close()


async def test_signature_carries_a_timestamp_and_a_replay_is_refused():
    async with Receiver() as rx:
        notifier = build_notifier({"name": "ops-hook", "type": "webhook", "url": rx.url(), "secret": SECRET})
        await notifier.send(sample_notification())
        await notifier.close()
    (delivery,) = rx.requests
    header = delivery.headers[SIGNATURE_HEADER]
    t = int(header.split(",")[0].removeprefix("t="))
    assert abs(t - time.time()) < 30 and header.split(",")[1].startswith("v1=")
    assert verify(delivery.body, SECRET, header, now=t + 299) == t
    with pytest.raises(SignatureError, match="replay"):   # the captured delivery sent again 6 minutes later
        verify(delivery.body, SECRET, header, now=t + 360)
    fresh_t = header.replace(f"t={t}", f"t={t + 360}")     # ... with its timestamp moved forward
    with pytest.raises(SignatureError, match="does not match"):
        verify(delivery.body, SECRET, fresh_t, now=t + 360)
    with pytest.raises(SignatureError, match="does not match"):
        verify(delivery.body, "another-secret", header, now=t)
    with pytest.raises(SignatureError):
        verify(delivery.body, SECRET, "sha256=" + header.split("v1=")[1], now=t)
    assert verify(delivery.body, SECRET, f"t={t},v1={'0' * 64},{header.split(',')[1]}", now=t) == t  # rotation
