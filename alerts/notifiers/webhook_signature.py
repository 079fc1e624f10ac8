"""Signed webhook deliveries with a timestamp, and the receiver's check (Stripe / Slack style).

Every signed POST (webhook and CAP notifiers, the webhook forwarder)
carries::

    X-CityEye-Signature: t=1751371200,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd

``t`` is the Unix time of this attempt (each retry is signed afresh) and
``v1`` the hex HMAC-SHA256, keyed with the receiver's shared secret, of
``"<t>." + body``. A receiver recomputes it over the raw body, compares in
constant time, and refuses a timestamp more than ``tolerance_s`` (5
minutes) away from its clock, so a captured delivery cannot be replayed
later; deliveries are also idempotent by their ``Idempotency-Key``, which
catches a replay inside the window. Several ``v1`` entries may appear
(while a secret is rotated); one matching is enough.

A receiver in Python::

    from alerts.notifiers.webhook_signature import SignatureError, verify

    try:
        verify(request_body, secret, request.headers["X-CityEye-Signature"])
    except SignatureError as exc:
        return 400, str(exc)
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr

from cityeye.errors import CityEyeError

__all__ = ["SIGNATURE_HEADER", "TOLERANCE_S", "SignatureError", "sign", "verify"]

SIGNATURE_HEADER = "X-CityEye-Signature"
#: how far a signature's timestamp may be from the receiver's clock
TOLERANCE_S = 300.0


class SignatureError(CityEyeError):
    """A delivery's signature is missing, malformed, wrong or too old."""


def _key(secret: SecretStr | str) -> bytes:
    return (secret.get_secret_value() if isinstance(secret, SecretStr) else secret).encode()


def _mac(body: bytes, secret: SecretStr | str, timestamp: int) -> str:
    return hmac.new(_key(secret), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: SecretStr | str, timestamp: float | None = None) -> str:
    """The header value ``t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` (``timestamp``: now)."""
    t = int(time.time() if timestamp is None else timestamp)
    return f"t={t},v1={_mac(body, secret, t)}"


def verify(body: bytes, secret: SecretStr | str, header: str | None, *, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> int:
    """Check a received signature; return its timestamp or raise :class:`SignatureError`.

    Refused: no header, no ``t`` or ``v1``, no ``v1`` matching the body, and
    a timestamp further than ``tolerance_s`` from ``now`` (a replay).
    """
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp, macs = None, []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        raise SignatureError(f"{SIGNATURE_HEADER} must be t=<unix time>,v1=<hex>")
    expected = _mac(body, secret, timestamp)
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise SignatureError("signature does not match the body")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise SignatureError(f"signature timestamp is {age:.0f} s from now (more than {tolerance_s:g} s): "
                             "refused as a replay")
    return timestamp
